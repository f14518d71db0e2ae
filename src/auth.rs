//! JWT -> user. Tokens are HS256, signed with `JWT_SECRET` by the diary app (or by
//! `diary-realtime token` for local use). The user id is `sub`, falling back to the
//! claims older app tokens carry: `userId`, `user_id`, `id`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::{distributions::Alphanumeric, Rng};
use serde_json::{json, Map, Value};

use crate::config::Settings;
use crate::ids::UserId;

/// Who a socket or an HTTP request acts for, as proven by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: UserId,
    /// True when the token's `role` claim is `service` (may create notifications).
    pub is_service: bool,
    /// Unix seconds after which the token is no longer valid, when it says so.
    pub expires_at: Option<u64>,
}

/// Why a token was refused. The `Display` text follows `AUTH_ERROR: ` on the wire,
/// so it says what is wrong without echoing the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
    /// Well-formed, but signed with another secret (the wire text stays the same).
    #[error("invalid token")]
    BadSignature,
    #[error("token has no user id")]
    NoUser,
}

/// HS256 wants a key of at least 256 bits (RFC 7518, section 3.2).
const MIN_SECRET_BYTES: usize = 32;

/// The signing secret, for verifying and (locally) minting tokens.
#[derive(Clone)]
pub struct JwtKeys {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is enforced when present, but the app's older tokens may lack it.
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.leeway = 0;
        Self {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Keys from the configured secret, or from a random one with a loud warning:
    /// tokens minted elsewhere will not verify until `JWT_SECRET` is set.
    pub fn from_settings(settings: &Settings) -> Self {
        match &settings.jwt_secret {
            Some(secret) if secret.len() < MIN_SECRET_BYTES => {
                tracing::warn!(
                    bytes = secret.len(),
                    "JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes: tokens can be forged by guessing it. \
                     Use a long random secret (e.g. `openssl rand -hex 32`) in the diary app and here."
                );
                Self::new(secret)
            }
            Some(secret) => Self::new(secret),
            None => {
                let secret: String = rand::thread_rng()
                    .sample_iter(&Alphanumeric)
                    .take(48)
                    .map(char::from)
                    .collect();
                tracing::warn!(
                    "JWT_SECRET is not set: using a random secret for this run only. \
                     No token from the diary app or from `diary-realtime token` will verify. \
                     Set JWT_SECRET for anything but a throwaway local run."
                );
                Self::new(&secret)
            }
        }
    }

    pub fn verify(&self, token: &str) -> Result<AuthUser, AuthError> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(
            token.trim(),
            &self.decoding,
            &self.validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            _ => AuthError::Invalid,
        })?;
        let claims = data.claims;
        let user_id = ["sub", "userId", "user_id", "id"]
            .iter()
            .find_map(|name| claims.get(*name))
            .ok_or(AuthError::NoUser)?
            .as_str()
            .and_then(|s| UserId::parse(s).ok())
            .ok_or(AuthError::NoUser)?;
        Ok(AuthUser {
            user_id,
            is_service: claims.get("role").and_then(Value::as_str) == Some("service"),
            expires_at: claims.get("exp").and_then(Value::as_u64),
        })
    }

    /// Mints a token for `user` valid for `ttl`; `role` goes into the `role` claim.
    pub fn mint(&self, user: UserId, ttl: Duration, role: Option<&str>) -> String {
        let now = unix_now();
        let mut claims = json!({ "sub": user.to_string(), "iat": now, "exp": now + ttl.as_secs() });
        if let (Some(role), Some(map)) = (role, claims.as_object_mut()) {
            map.insert("role".into(), Value::String(role.into()));
        }
        // Encoding a JSON object with an HMAC key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Finds the token of a Socket.IO handshake: `auth.token`, then `?token=`, then
/// `Authorization: Bearer`.
pub fn token_from_handshake<'a>(
    auth: Option<&'a Value>,
    parts: &'a axum::http::request::Parts,
) -> Option<std::borrow::Cow<'a, str>> {
    if let Some(token) = auth.and_then(|a| a.get("token")).and_then(Value::as_str) {
        return Some(token.into());
    }
    if let Some(query) = parts.uri.query() {
        if let Some((_, value)) = url_pairs(query).find(|(k, _)| k == "token") {
            return Some(value.into());
        }
    }
    bearer_token(&parts.headers).map(Into::into)
}

/// The token of an `Authorization: Bearer <jwt>` header.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        Some((percent_decode(k), percent_decode(v)))
    })
}

fn percent_decode(raw: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-secret-0123456789";

    fn sign(claims: Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn minted_tokens_verify() {
        let keys = JwtKeys::new(SECRET);
        let user = UserId::new_random();
        let got = keys
            .verify(&keys.mint(user, Duration::from_secs(60), Some("service")))
            .unwrap();
        assert_eq!(got.user_id, user);
        assert!(got.is_service);
    }

    #[test]
    fn claim_fallbacks_and_failures() {
        let keys = JwtKeys::new(SECRET);
        let id = uuid::Uuid::new_v4().to_string();
        for claim in ["userId", "user_id", "id"] {
            let got = keys.verify(&sign(json!({ claim: id }), SECRET)).unwrap();
            assert_eq!(got.user_id.to_string(), id);
            assert_eq!(got.expires_at, None);
        }
        assert_eq!(
            keys.verify(&sign(json!({"name": "x"}), SECRET)),
            Err(AuthError::NoUser)
        );
        assert_eq!(
            keys.verify(&sign(json!({"sub": "not-a-uuid"}), SECRET)),
            Err(AuthError::NoUser)
        );
        assert_eq!(
            keys.verify(&sign(json!({"sub": id}), "another-secret-entirely")),
            Err(AuthError::BadSignature)
        );
        assert_eq!(keys.verify("garbage"), Err(AuthError::Invalid));
        assert_eq!(
            keys.verify(&sign(json!({"sub": id, "exp": unix_now() - 5}), SECRET)),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Eb+c%"), "a.b c%");
        let (parts, _) = axum::http::Request::builder()
            .uri("/realtime/ws/?EIO=4&token=abc%2Edef&transport=polling")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(
            token_from_handshake(None, &parts).as_deref(),
            Some("abc.def")
        );
    }
}
