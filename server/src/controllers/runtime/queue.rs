//! The work queue between watches and reconciles: it holds keys, not
//! events, so a burst of changes to one object costs one reconcile; it never
//! hands out a key that a worker is still reconciling (a key that changes
//! meanwhile is handed out again once that worker is done); and it holds
//! keys back until a delay has passed, for requeues and back-off.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A deduplicating, delaying work queue of keys.
#[derive(Debug)]
pub struct WorkQueue<T> {
    state: Mutex<QueueState<T>>,
    wake: Notify,
    depth: Option<IntGauge>,
}

#[derive(Debug)]
struct QueueState<T> {
    /// Keys ready to hand out, in arrival order.
    ready: VecDeque<T>,
    /// The keys in `ready`, for deduplication.
    queued: HashSet<T>,
    /// Keys a worker holds right now.
    active: HashSet<T>,
    /// Active keys that were added again while held.
    dirty: HashSet<T>,
    /// Keys held back until their instant (the earliest one asked for).
    delayed: HashMap<T, Instant>,
}

impl<T: Clone + Eq + Hash> WorkQueue<T> {
    /// An empty queue; `depth`, when given, follows the number of keys
    /// waiting (ready or delayed).
    pub fn new(depth: Option<IntGauge>) -> WorkQueue<T> {
        WorkQueue {
            state: Mutex::new(QueueState {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                active: HashSet::new(),
                dirty: HashSet::new(),
                delayed: HashMap::new(),
            }),
            wake: Notify::new(),
            depth,
        }
    }

    /// Adds `key` to be handed out as soon as possible.
    pub fn add(&self, key: T) {
        let mut state = self.lock();
        state.delayed.remove(&key);
        let woke = state.enqueue(key);
        self.report(&state);
        drop(state);
        if woke {
            self.wake.notify_one();
        }
    }

    /// Adds `key` to be handed out after `delay`, unless it is queued
    /// sooner by another call.
    pub fn add_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        let mut state = self.lock();
        if state.queued.contains(&key) {
            return;
        }
        let earliest = state.delayed.entry(key).or_insert(at);
        if at < *earliest {
            *earliest = at;
        }
        self.report(&state);
        drop(state);
        // A sleeping worker must learn of an earlier deadline.
        self.wake.notify_one();
    }

    /// The next key to work on; the caller must call [`WorkQueue::done`]
    /// with it afterwards. `None` once `cancel` fires.
    pub async fn next(&self, cancel: &CancellationToken) -> Option<T> {
        loop {
            // Registered before the state is read, so that an add between
            // the read and the wait still wakes this worker.
            let woken = self.wake.notified();
            let deadline = {
                let mut state = self.lock();
                state.promote_due(Instant::now());
                if let Some(key) = state.ready.pop_front() {
                    state.queued.remove(&key);
                    state.active.insert(key.clone());
                    let more = !state.ready.is_empty();
                    self.report(&state);
                    drop(state);
                    // Notify stores a single permit; pass the wake-up on so
                    // that other idle workers take the remaining keys.
                    if more {
                        self.wake.notify_one();
                    }
                    return Some(key);
                }
                state.delayed.values().min().copied()
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = woken => {}
                () = sleep => {}
            }
        }
    }

    /// Releases `key` after a worker is done with it; if it was added while
    /// held, it is ready again.
    pub fn done(&self, key: &T) {
        let mut state = self.lock();
        state.active.remove(key);
        let woke = state.dirty.remove(key) && state.enqueue(key.clone());
        self.report(&state);
        drop(state);
        if woke {
            self.wake.notify_one();
        }
    }

    /// How many keys wait (ready, delayed, or re-added while held).
    pub fn len(&self) -> usize {
        let state = self.lock();
        state.waiting()
    }

    /// Whether no key waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, state: &QueueState<T>) {
        if let Some(depth) = &self.depth {
            depth.set(state.waiting() as i64);
        }
    }
}

impl<T: Clone + Eq + Hash> QueueState<T> {
    /// Queues `key` unless it is queued already or held (then it is marked
    /// to run again). Whether a worker should be woken.
    fn enqueue(&mut self, key: T) -> bool {
        if self.active.contains(&key) {
            self.dirty.insert(key);
            return false;
        }
        if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
            return true;
        }
        false
    }

    fn promote_due(&mut self, now: Instant) {
        let due: Vec<T> = self
            .delayed
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            self.delayed.remove(&key);
            self.enqueue(key);
        }
    }

    fn waiting(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.dirty.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> WorkQueue<&'static str> {
        WorkQueue::new(None)
    }

    #[tokio::test]
    async fn a_key_added_twice_is_handed_out_once() {
        let queue = queue();
        let cancel = CancellationToken::new();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.next(&cancel).await, Some("a"));
        assert_eq!(queue.next(&cancel).await, Some("b"));
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_key_is_never_handed_out_while_a_worker_holds_it() {
        let queue = queue();
        let cancel = CancellationToken::new();
        queue.add("a");
        let held = queue.next(&cancel).await.unwrap();
        queue.add("a");
        queue.add("b");
        // "a" changed while held: it waits, and "b" goes first.
        assert_eq!(queue.next(&cancel).await, Some("b"));
        queue.done(&"b");
        queue.done(&held);
        assert_eq!(queue.next(&cancel).await, Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_key_waits_for_its_delay_unless_added_sooner() {
        let queue = queue();
        let cancel = CancellationToken::new();
        queue.add_after("late", Duration::from_secs(30));
        queue.add_after("soon", Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(queue.next(&cancel).await, Some("soon"));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        queue.add("late");
        assert_eq!(queue.next(&cancel).await, Some("late"));
        assert!(start.elapsed() < Duration::from_secs(30));
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn next_returns_none_once_cancelled() {
        let queue = queue();
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert_eq!(queue.next(&cancel).await, None);
    }
}
