//! Who may see whom: the friend list of every user online here, as last read from
//! the database, kept current by friendship changes.
//!
//! Two users see each other's presence only when each is in the other's list
//! ("visible"). Requiring both sides means one stale list (a friendship removed on
//! SQLite, seen only by the side that reconnected) can never leak presence to a
//! former friend; the stale side is corrected on its own next read.

use std::collections::{HashMap, HashSet};

use crate::ids::UserId;

/// Friend lists of the users this process holds online (including grace periods).
#[derive(Default)]
pub struct FriendViews {
    views: HashMap<UserId, HashSet<UserId>>,
}

/// Pairs whose visibility changed with a fresh read of one user's friends.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Friends who now see the user (and whom the user now sees).
    pub gained: Vec<UserId>,
    /// Friends who no longer see the user.
    pub lost: Vec<UserId>,
}

impl FriendViews {
    /// Starts tracking a user who came online, with their friends as just read. Friends
    /// tracked here learn of the friendship too (the read is newer than theirs).
    pub fn install(&mut self, user: UserId, mut friends: HashSet<UserId>) {
        friends.remove(&user);
        for friend in &friends {
            if let Some(view) = self.views.get_mut(friend) {
                view.insert(user);
            }
        }
        self.views.insert(user, friends);
    }

    /// Stops tracking a user who went offline. Other lists keep them: they are still
    /// friends, only offline.
    pub fn forget(&mut self, user: UserId) {
        self.views.remove(&user);
    }

    pub fn tracked(&self) -> Vec<UserId> {
        self.views.keys().copied().collect()
    }

    pub fn is_tracked(&self, user: UserId) -> bool {
        self.views.contains_key(&user)
    }

    /// The user's friends as last read, if tracked.
    pub fn friends_of(&self, user: UserId) -> Option<&HashSet<UserId>> {
        self.views.get(&user)
    }

    /// Whether `a` and `b` see each other (both online here, each in the other's list).
    pub fn visible(&self, a: UserId, b: UserId) -> bool {
        let lists = |x: UserId, y: UserId| self.views.get(&x).is_some_and(|v| v.contains(&y));
        a != b && lists(a, b) && lists(b, a)
    }

    /// Whether `to` (held here) sees `about`, who is online somewhere or not: `to`
    /// lists `about`, and `about`'s own list, when held here, lists `to`. With every
    /// online user held here (a single process) this is [`Self::visible`].
    pub fn sees(&self, to: UserId, about: UserId, about_online: bool) -> bool {
        to != about
            && about_online
            && self.views.get(&to).is_some_and(|v| v.contains(&about))
            && self.views.get(&about).is_none_or(|v| v.contains(&to))
    }

    /// The online friends who see `user`: everyone told about their presence.
    pub fn audience(&self, user: UserId) -> Vec<UserId> {
        self.views
            .get(&user)
            .map(|friends| {
                friends
                    .iter()
                    .copied()
                    .filter(|f| self.visible(user, *f))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A friendship between `a` and `b` exists. True when they did not see each other
    /// before and do now (both must be told).
    pub fn add(&mut self, a: UserId, b: UserId) -> bool {
        if a == b {
            return false;
        }
        let before = self.visible(a, b);
        if let Some(view) = self.views.get_mut(&a) {
            view.insert(b);
        }
        if let Some(view) = self.views.get_mut(&b) {
            view.insert(a);
        }
        !before && self.visible(a, b)
    }

    /// The friendship between `a` and `b` is gone. True when they saw each other
    /// until now (both must be told).
    pub fn remove(&mut self, a: UserId, b: UserId) -> bool {
        let before = self.visible(a, b);
        if let Some(view) = self.views.get_mut(&a) {
            view.remove(&b);
        }
        if let Some(view) = self.views.get_mut(&b) {
            view.remove(&a);
        }
        before
    }

    /// Replaces a tracked user's list with a fresh read; returns whose visibility
    /// changed. Untracked users are left alone.
    pub fn refresh(&mut self, user: UserId, fresh: HashSet<UserId>) -> Changes {
        let Some(old) = self.views.get(&user).cloned() else {
            return Changes::default();
        };
        let mut changes = Changes::default();
        for friend in fresh.iter().copied().filter(|f| *f != user) {
            if self.add(user, friend) {
                changes.gained.push(friend);
            }
        }
        for friend in old.difference(&fresh).copied() {
            if self.remove(user, friend) {
                changes.lost.push(friend);
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users<const N: usize>() -> [UserId; N] {
        std::array::from_fn(|_| UserId::new_random())
    }

    #[test]
    fn friends_see_each_other_only_while_both_lists_agree() {
        let [a, b, c] = users();
        let mut views = FriendViews::default();
        views.install(a, HashSet::from([b]));
        assert!(views.audience(a).is_empty(), "b is offline");
        views.install(b, HashSet::from([a]));
        assert_eq!(views.audience(a), vec![b]);
        assert_eq!(views.audience(b), vec![a]);
        // c is no one's friend.
        views.install(c, HashSet::new());
        assert!(views.audience(c).is_empty() && !views.visible(a, c));

        // A removal seen by one side only (SQLite) hides both ways at once.
        let changes = views.refresh(b, HashSet::new());
        assert_eq!(changes.lost, vec![a]);
        assert!(views.audience(a).is_empty() && views.audience(b).is_empty());
    }

    #[test]
    fn adding_twice_announces_once_and_removal_needs_visibility() {
        let [a, b] = users();
        let mut views = FriendViews::default();
        views.install(a, HashSet::new());
        views.install(b, HashSet::new());
        // Both row directions inserted: one announcement.
        assert!(views.add(a, b));
        assert!(!views.add(b, a));
        assert!(views.remove(a, b));
        assert!(!views.remove(b, a));
        assert!(!views.add(a, a));
    }

    #[test]
    fn a_returning_user_is_seen_only_by_current_friends() {
        let [a, b] = users();
        let mut views = FriendViews::default();
        views.install(b, HashSet::from([a]));
        // a comes online with a list that no longer names b: b's stale list is not enough.
        views.install(a, HashSet::new());
        assert!(views.audience(b).is_empty());
        assert!(views.audience(a).is_empty());
        // b's next read fixes b's list; nobody was visible, so nothing to announce.
        assert_eq!(views.refresh(b, HashSet::new()), Changes::default());
        views.forget(a);
        assert!(!views.is_tracked(a));
    }
}
