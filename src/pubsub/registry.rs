//! [`Registry`]: which client is subscribed to which channel, for one pool (no I/O).
//!
//! A client's place on a channel has two parts: `active`, a committed LISTEN (notifications are
//! delivered to it), and `pending`, LISTENs not committed yet (inside a transaction, or waiting
//! for the dedicated connection to confirm the channel). Either keeps the channel in the union
//! the dedicated connection listens to, so that a LISTEN committed later misses nothing sent
//! after it. The methods that change the union say so: `true` from [`Registry::add_pending`] means
//! the channel is new, `true` from the others that it is gone.

use std::collections::HashMap;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Place {
    active: bool,
    pending: u32,
}

/// Subscriptions of one pool's clients, by channel.
#[derive(Debug, Default)]
pub struct Registry {
    channels: HashMap<Box<str>, HashMap<u64, Place>>,
    /// Active (client, channel) pairs.
    active: usize,
}

impl Registry {
    /// A LISTEN of `client` on `channel` is under way. True when the channel is new to the union.
    pub fn add_pending(&mut self, client: u64, channel: &str) -> bool {
        let new = !self.channels.contains_key(channel);
        let place = self
            .channels
            .entry(channel.into())
            .or_default()
            .entry(client)
            .or_default();
        place.pending += 1;
        new
    }

    /// A LISTEN under way ended (committed, rolled back or failed). True when the channel left
    /// the union.
    pub fn drop_pending(&mut self, client: u64, channel: &str) -> bool {
        self.update(client, channel, |p| p.pending = p.pending.saturating_sub(1))
    }

    /// A LISTEN (`true`) or UNLISTEN (`false`) of `client` on `channel` took effect. True when the
    /// channel left the union.
    pub fn set_active(&mut self, client: u64, channel: &str, active: bool) -> bool {
        if active && !self.channels.contains_key(channel) {
            self.channels.insert(channel.into(), HashMap::new());
        }
        self.update(client, channel, |p| p.active = active)
    }

    /// `UNLISTEN *` of `client`: the channels that left the union.
    pub fn deactivate_all(&mut self, client: u64) -> Vec<Box<str>> {
        let mine: Vec<Box<str>> = self
            .channels
            .iter()
            .filter(|(_, m)| m.get(&client).is_some_and(|p| p.active))
            .map(|(c, _)| c.clone())
            .collect();
        mine.into_iter()
            .filter(|c| self.set_active(client, c, false))
            .collect()
    }

    /// The client is gone: every place it had. The channels that left the union.
    pub fn remove_client(&mut self, client: u64) -> Vec<Box<str>> {
        let mut gone = Vec::new();
        self.channels.retain(|channel, m| {
            if let Some(p) = m.remove(&client) {
                if p.active {
                    self.active -= 1;
                }
            }
            if m.is_empty() {
                gone.push(channel.clone());
                false
            } else {
                true
            }
        });
        gone
    }

    fn update(&mut self, client: u64, channel: &str, f: impl FnOnce(&mut Place)) -> bool {
        let Some(m) = self.channels.get_mut(channel) else {
            return false;
        };
        let mut place = m.get(&client).copied().unwrap_or_default();
        let was = place.active;
        f(&mut place);
        match (was, place.active) {
            (false, true) => self.active += 1,
            (true, false) => self.active -= 1,
            _ => {}
        }
        if place == Place::default() {
            m.remove(&client);
        } else {
            m.insert(client, place);
        }
        if m.is_empty() {
            self.channels.remove(channel);
            return true;
        }
        false
    }

    /// Whether `channel` is in the union.
    pub fn has_channel(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// The union: every channel some client listens to or is about to.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(|c| &**c)
    }

    /// The clients a notification on `channel` goes to.
    pub fn subscribers(&self, channel: &str) -> impl Iterator<Item = u64> + '_ {
        self.channels
            .get(channel)
            .into_iter()
            .flat_map(|m| m.iter().filter(|(_, p)| p.active).map(|(c, _)| *c))
    }

    /// Whether `client` is subscribed to `channel` (a committed LISTEN).
    pub fn is_active(&self, client: u64, channel: &str) -> bool {
        self.channels
            .get(channel)
            .and_then(|m| m.get(&client))
            .is_some_and(|p| p.active)
    }

    /// Active (client, channel) pairs: the subscriptions gauge.
    pub fn subscriptions(&self) -> usize {
        self.active
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<u64>) -> Vec<u64> {
        v.sort();
        v
    }

    #[test]
    fn the_union_follows_listens_and_unlistens() {
        let mut r = Registry::default();
        assert!(r.add_pending(1, "a"), "a is new");
        assert!(!r.set_active(1, "a", true));
        assert!(!r.drop_pending(1, "a"));
        assert!(!r.add_pending(2, "a"), "a is listened already");
        r.set_active(2, "a", true);
        r.drop_pending(2, "a");
        assert_eq!(sorted(r.subscribers("a").collect()), [1, 2]);
        assert_eq!(r.subscriptions(), 2);
        assert!(!r.set_active(1, "a", false), "2 still listens");
        assert!(r.set_active(2, "a", false), "nobody listens to a now");
        assert!(r.is_empty());
        assert_eq!(r.subscriptions(), 0);
    }

    #[test]
    fn a_pending_listen_keeps_the_channel_without_deliveries() {
        let mut r = Registry::default();
        assert!(r.add_pending(1, "a"));
        assert_eq!(r.subscribers("a").count(), 0, "not committed yet");
        assert!(r.has_channel("a"));
        assert!(r.drop_pending(1, "a"), "rolled back: the channel goes");
    }

    #[test]
    fn unlisten_star_and_a_client_that_leaves() {
        let mut r = Registry::default();
        for c in ["a", "b"] {
            r.add_pending(1, c);
            r.set_active(1, c, true);
            r.drop_pending(1, c);
        }
        r.set_active(2, "b", true);
        let mut gone = r.deactivate_all(1);
        gone.sort();
        assert_eq!(gone, [Box::from("a")]);
        assert!(!r.is_active(1, "b") && r.is_active(2, "b"));
        assert_eq!(r.remove_client(2), [Box::from("b")]);
        assert!(r.is_empty());
        assert_eq!(r.subscriptions(), 0);
    }

    #[test]
    fn unlisten_of_an_unknown_channel_changes_nothing() {
        let mut r = Registry::default();
        assert!(!r.set_active(1, "x", false));
        assert!(r.is_empty());
    }
}
