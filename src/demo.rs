//! `seed-demo`: a few users, a shared entry and a friendship, so a fresh checkout has
//! something to connect to. Fixed ids make it safe to run again.

use std::time::Duration;

use uuid::Uuid;

use crate::auth::JwtKeys;
use crate::config::Settings;
use crate::ids::{EntryId, UserId};
use crate::store::{self, EntryRole, NewEntry, NewUser, Visibility};

pub const ALICE: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_00000000a11c);
pub const BOB: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000b0b);
pub const CAROL: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_0000000ca201);
pub const SHARED_ENTRY: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_0000000e0001);

/// Seeds the demo data and prints a token and a demo-page link per user.
pub async fn seed(settings: &Settings) -> anyhow::Result<()> {
    let Some(secret) = &settings.jwt_secret else {
        anyhow::bail!("JWT_SECRET must be set (env or --jwt-secret) so the printed tokens verify");
    };
    let store = store::open(settings).await?;
    let users = [
        (ALICE, "alice", "Alice"),
        (BOB, "bob", "Bob"),
        (CAROL, "carol", "Carol"),
    ];
    for (id, username, name) in users {
        store
            .upsert_user(&NewUser {
                id: UserId(id),
                username: username.into(),
                display_name: Some(name.into()),
            })
            .await?;
    }
    store
        .upsert_entry(&NewEntry {
            id: EntryId(SHARED_ENTRY),
            owner: UserId(ALICE),
            title: "Our shared diary".into(),
            visibility: Visibility::Friends,
        })
        .await?;
    store
        .set_collaborator(EntryId(SHARED_ENTRY), UserId(BOB), EntryRole::Editor)
        .await?;
    store
        .set_collaborator(EntryId(SHARED_ENTRY), UserId(CAROL), EntryRole::Viewer)
        .await?;
    store.add_friendship(UserId(ALICE), UserId(BOB)).await?;
    store.close().await;

    let keys = JwtKeys::new(secret);
    let day = Duration::from_secs(24 * 3600);
    println!(
        "entry {SHARED_ENTRY}  (owner alice; bob editor; carol viewer; alice and bob are friends)"
    );
    let mut links = Vec::new();
    for (id, username, _) in users {
        let token = keys.mint(UserId(id), day, None);
        println!("{username:<6} {id}  token {token}");
        links.push((username, demo_url(settings.port, &token)));
    }
    println!();
    println!("open the demo editor (start the server first), one tab per user:");
    for (username, url) in links {
        println!("  {username:<6} {url}");
    }
    println!(
        "service token (POST /api/notifications): {}",
        keys.mint(UserId(ALICE), day, Some("service"))
    );
    Ok(())
}

/// The demo page (`src/http/demo.rs`) for the shared entry, signed in with `token`.
/// JWTs are base64url and dots, so they need no escaping in a query string.
fn demo_url(port: u16, token: &str) -> String {
    format!("http://localhost:{port}/demo?token={token}&entry={SHARED_ENTRY}")
}
