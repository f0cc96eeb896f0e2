//! Who gets a connection slot at accept: the listener's three pools.
//!
//! - total: at most `max_connections` connections open at once;
//! - per client address (IP, any port): at most `max_connections_per_client`
//!   of them, so one pod that opens connections in a loop cannot take every
//!   slot and leave none for the apiserver;
//! - pending TLS handshakes: at most `max_pending_handshakes`, each held from
//!   accept until TLS completes (or fails, or times out), so connections that
//!   never start TLS cannot hold the slots finished ones need. One address
//!   holds at most the same share of these as of the connections
//!   (`per client / total`, rounded up): 32 of 128 by default.
//!
//! A connection past any of them is closed at accept; [`Refused`] says
//! which, for the metric's `reason` label. Many distinct addresses can still
//! fill the total: the per-client share bounds what one address holds, not
//! how many addresses there are.
//!
//! Invariants: every count is taken by one [`Slot`] and given back by its
//! `Drop`, so no path (an error, a timeout, a panic in the connection task)
//! leaks one; an address has an entry in the map only while it holds a
//! connection, so the map never holds more than `max_connections` entries.
//! The lock is held for one hash lookup and update, never across an await.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::serve::Limits;
use crate::metrics::REFUSAL_REASONS;

/// Why a connection was closed at accept: the `reason` label of
/// `connections_refused_total`, in the order of [`REFUSAL_REASONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `--max-connections` are open.
    Total,
    /// This address holds `--max-connections-per-client` connections, or
    /// its share of the pending handshakes.
    PerClient,
    /// `--max-pending-handshakes` handshakes are in progress.
    Handshakes,
}

impl Refused {
    /// Its `reason` label, one of [`REFUSAL_REASONS`].
    pub fn reason(self) -> &'static str {
        REFUSAL_REASONS[self as usize]
    }
}

/// What one address holds now.
#[derive(Default, Debug, PartialEq, Eq)]
struct Held {
    open: usize,
    handshaking: usize,
}

/// The three pools; shared by the accept loop and every connection task.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    total: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    per_client: usize,
    handshakes_per_client: usize,
    clients: Mutex<HashMap<IpAddr, Held>>,
}

impl Slots {
    pub fn new(limits: &Limits) -> Arc<Slots> {
        let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        let per_client = limits.max_connections_per_client.clamp(1, max);
        let pending = limits.max_pending_handshakes.clamp(1, max);
        Arc::new(Slots {
            max,
            total: Arc::new(Semaphore::new(max)),
            handshakes: Arc::new(Semaphore::new(pending)),
            per_client,
            handshakes_per_client: (pending * per_client).div_ceil(max).max(1),
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// `--max-connections`, as clamped.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.total.available_permits()
    }

    /// The most pending handshakes one address may hold.
    pub fn handshakes_per_client(&self) -> usize {
        self.handshakes_per_client
    }

    /// A slot for a connection from `ip`, handshaking until
    /// [`Slot::handshake_done`], or why there is none.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        // The widest pool first, so the reason names what is full: with
        // the per-client limit at the total (a mesh), the total.
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Total)?;
        let handshake = self
            .handshakes
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Handshakes)?;
        let mut clients = self.clients();
        if let Some(held) = clients.get(&ip)
            && (held.open >= self.per_client || held.handshaking >= self.handshakes_per_client)
        {
            return Err(Refused::PerClient);
        }
        let held = clients.entry(ip).or_default();
        held.open += 1;
        held.handshaking += 1;
        Ok(Slot {
            slots: self.clone(),
            ip,
            handshake: Some(handshake),
            _total: total,
        })
    }

    /// Resolves once every connection has closed (shutdown).
    pub async fn all_closed(&self) {
        let _ = self
            .total
            .acquire_many(u32::try_from(self.max).unwrap_or(u32::MAX))
            .await;
    }

    /// A poisoned lock only means a panic elsewhere mid-update of plain
    /// counters; the counts are still the best there is.
    fn clients(&self) -> MutexGuard<'_, HashMap<IpAddr, Held>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn release(&self, ip: IpAddr, handshaking: bool) {
        let mut clients = self.clients();
        if let Entry::Occupied(mut entry) = clients.entry(ip) {
            let held = entry.get_mut();
            held.open = held.open.saturating_sub(1);
            if handshaking {
                held.handshaking = held.handshaking.saturating_sub(1);
            }
            if held.open == 0 {
                entry.remove();
            }
        }
    }

    fn handshake_done(&self, ip: IpAddr) {
        if let Some(held) = self.clients().get_mut(&ip) {
            held.handshaking = held.handshaking.saturating_sub(1);
        }
    }

    #[cfg(test)]
    fn held(&self, ip: IpAddr) -> Option<(usize, usize)> {
        self.clients().get(&ip).map(|h| (h.open, h.handshaking))
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.clients().len()
    }
}

/// One connection's hold on the pools; dropping it gives everything back.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
    handshake: Option<OwnedSemaphorePermit>,
    _total: OwnedSemaphorePermit,
}

impl Slot {
    /// TLS is over (done, failed or timed out): the handshake permit, and
    /// this address's count of pending handshakes, go back; the connection
    /// slot stays.
    pub fn handshake_done(&mut self) {
        if self.handshake.take().is_some() {
            self.slots.handshake_done(self.ip);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.ip, self.handshake.take().is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize, per_client: usize, pending: usize) -> Arc<Slots> {
        Slots::new(&Limits {
            max_connections: max,
            max_connections_per_client: per_client,
            max_pending_handshakes: pending,
            ..Limits::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_holds_at_most_its_share_and_others_still_get_slots() {
        let s = slots(8, 2, 8);
        let mut a = Vec::new();
        for _ in 0..2 {
            let mut slot = s.take(ip("10.0.0.1")).unwrap();
            slot.handshake_done();
            a.push(slot);
        }
        assert_eq!(s.take(ip("10.0.0.1")).unwrap_err(), Refused::PerClient);
        let b = s.take(ip("10.0.0.2")).unwrap();
        assert_eq!(s.open(), 3);
        drop(a.pop());
        assert!(
            s.take(ip("10.0.0.1")).is_ok(),
            "a freed slot is usable again"
        );
        drop(b);
    }

    #[test]
    fn the_total_is_shared_by_all_addresses() {
        let s = slots(3, 2, 3);
        let held: Vec<Slot> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .iter()
            .map(|a| s.take(ip(a)).unwrap())
            .collect();
        assert_eq!(s.take(ip("10.0.0.4")).unwrap_err(), Refused::Total);
        assert_eq!(s.addresses(), 3, "a refused address gets no entry");
        drop(held);
        assert_eq!(s.open(), 0);
    }

    #[test]
    fn pending_handshakes_are_bounded_in_all_and_per_address() {
        // 8 pending in all; a quarter of the connections per address, so a
        // quarter of the handshakes too: 2.
        let s = slots(16, 4, 8);
        assert_eq!(s.handshakes_per_client(), 2);
        let mut a: Vec<Slot> = (0..2).map(|_| s.take(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(s.take(ip("10.0.0.1")).unwrap_err(), Refused::PerClient);
        // A finished handshake frees the address's share, not its slot.
        a[0].handshake_done();
        a[0].handshake_done();
        assert_eq!(s.held(ip("10.0.0.1")), Some((2, 1)));
        a.push(s.take(ip("10.0.0.1")).unwrap());
        // Other addresses fill the rest of the pending handshakes.
        let others: Vec<Slot> = (2..8)
            .map(|n| s.take(ip(&format!("10.0.0.{n}"))).unwrap())
            .collect();
        assert_eq!(s.take(ip("10.0.0.9")).unwrap_err(), Refused::Handshakes);
        assert_eq!(s.open(), 9);
        drop(others);
        assert!(s.take(ip("10.0.0.9")).is_ok());
    }

    #[test]
    fn dropping_a_slot_gives_everything_back_and_forgets_the_address() {
        let s = slots(4, 4, 4);
        let mut first = s.take(ip("10.0.0.1")).unwrap();
        let second = s.take(ip("10.0.0.1")).unwrap();
        first.handshake_done();
        assert_eq!(s.held(ip("10.0.0.1")), Some((2, 1)));
        drop(first);
        assert_eq!(s.held(ip("10.0.0.1")), Some((1, 1)));
        // Dropped mid-handshake (a timeout, an error): both counts go back.
        drop(second);
        assert_eq!(s.held(ip("10.0.0.1")), None);
        assert_eq!(s.addresses(), 0);
        assert_eq!(s.open(), 0);
        assert_eq!(s.handshakes.available_permits(), 4);
    }

    #[test]
    fn many_addresses_leave_no_entries_behind() {
        let s = slots(1024, 256, 128);
        for round in 0..4u8 {
            let held: Vec<Slot> = (0..100u8)
                .map(|n| s.take(IpAddr::from([10, round, 0, n])).unwrap())
                .collect();
            assert_eq!(s.addresses(), 100);
            drop(held);
            assert_eq!(s.addresses(), 0);
        }
    }

    #[test]
    fn a_per_client_limit_equal_to_the_total_is_one_pool() {
        // Behind a mesh sidecar or a proxy every client is one address.
        let s = slots(4, 4, 2);
        assert_eq!(s.handshakes_per_client(), 2);
        let mut held: Vec<Slot> = (0..2).map(|_| s.take(ip("127.0.0.6")).unwrap()).collect();
        assert_eq!(s.take(ip("127.0.0.6")).unwrap_err(), Refused::Handshakes);
        for slot in &mut held {
            slot.handshake_done();
        }
        held.extend((0..2).map(|_| s.take(ip("127.0.0.6")).unwrap()));
        assert_eq!(s.take(ip("127.0.0.6")).unwrap_err(), Refused::Total);
        assert_eq!(s.open(), 4);
    }

    #[test]
    fn each_refusal_has_its_own_reason_label() {
        assert_eq!(Refused::Total.reason(), "total");
        assert_eq!(Refused::PerClient.reason(), "per_client");
        assert_eq!(Refused::Handshakes.reason(), "handshakes");
    }

    #[test]
    fn zero_limits_are_read_as_one() {
        let s = slots(0, 0, 0);
        let _one = s.take(ip("10.0.0.1")).unwrap();
        assert_eq!(s.take(ip("10.0.0.2")).unwrap_err(), Refused::Total);
    }
}
