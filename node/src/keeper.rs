//! The socket keeper: the pure decision, shared by both plugins, that keeps a socket served
//! (serve it when it is missing or replaced, back off when serving fails). The device
//! plugin's registration plan ([`crate::device_plugin::plan`]) builds on it.
//!
//! Nothing here does I/O or reads the clock. A shell ([`crate::watch`], [`crate::serve`]
//! and each plugin's lifecycle) looks at the files, feeds what it saw in with the current time, and does what
//! comes out; the tables in the tests below are the specification.
//!
//! Files are told apart by [`FileId`]: device, inode *and* change time. Inode numbers alone
//! are reused (on ext4 a socket created right after another was deleted often gets the
//! deleted one's number), so a recreated socket can carry the old inode; its change time is
//! the moment it was created.

use std::time::{Duration, Instant};

/// Which file sits at a path: two files with the same `FileId` are the same file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    /// Device of the file system.
    pub dev: u64,
    /// Inode number (reused after a delete, hence the change time).
    pub ino: u64,
    /// Change time, seconds.
    pub ctime: i64,
    /// Change time, nanoseconds.
    pub ctime_nsec: i64,
}

/// Retry delays that double from a start value up to a maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    start: Duration,
    max: Duration,
    delay: Duration,
    until: Option<Instant>,
}

impl Backoff {
    /// No wait yet; after failures the delays are `start`, `2 × start`, … up to `max`.
    pub const fn new(start: Duration, max: Duration) -> Self {
        Backoff {
            start,
            max,
            delay: start,
            until: None,
        }
    }

    /// A failure at `now`: wait out the current delay, and double it for the next failure.
    pub fn failed(&mut self, now: Instant) {
        self.until = Some(now + self.delay);
        self.delay = (self.delay * 2).min(self.max);
    }

    /// A success, or news that makes the old failures irrelevant: try at once, start over.
    pub fn reset(&mut self) {
        self.delay = self.start;
        self.until = None;
    }

    /// Whether an attempt may go at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|until| now >= until)
    }

    /// When the current wait ends, while one runs.
    pub fn until(&self) -> Option<Instant> {
        self.until
    }
}

/// What the shell saw about a kept socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketSeen {
    /// The socket's path, looked at after a directory event or at a poll: the file there, if any.
    At(Option<FileId>),
    /// The shell bound the socket and serves it: the file it bound.
    Served(FileId),
    /// Binding or serving failed.
    ServeFailed,
    /// The time from [`Keeper::wake_at`] came.
    Timer,
}

/// What to do about a kept socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketAction {
    /// Nothing.
    Keep,
    /// Serve the socket: nothing serves it yet, or serving failed and the backoff is over.
    Serve,
    /// The socket we served was removed or replaced: stop that server and serve the path anew.
    ServeAgain,
}

/// Keeps one socket served: serves it when it is missing or replaced, backs off when serving fails.
///
/// The device plugin keeps its plugin socket with it; the CSI plugin keeps its CSI socket
/// (served again at the same path, no registration needed) and its registration socket
/// (served again, so the kubelet's plugin watcher registers the plugin anew).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keeper {
    serving: Option<FileId>,
    retry: Backoff,
}

impl Keeper {
    /// Not serving yet; the first observation or timer asks to serve. `retry` paces failed serves.
    pub const fn new(retry: Backoff) -> Self {
        Keeper {
            serving: None,
            retry,
        }
    }

    /// The file we serve, while we serve.
    pub fn serving(&self) -> Option<FileId> {
        self.serving
    }

    /// When the shell should feed [`SocketSeen::Timer`]: while a failed serve waits out its backoff.
    pub fn wake_at(&self) -> Option<Instant> {
        match self.serving {
            None => self.retry.until(),
            Some(_) => None,
        }
    }

    /// Decides what to do about the socket after `seen`, at `now`.
    pub fn decide(&mut self, seen: SocketSeen, now: Instant) -> SocketAction {
        match (seen, self.serving) {
            // Our own file is still there (the event was our own bind, or nothing changed).
            (SocketSeen::At(file), Some(ours)) if file == Some(ours) => SocketAction::Keep,
            // Removed (a kubelet restart deletes every socket) or replaced by another file:
            // serve again at once, whatever earlier failures were.
            (SocketSeen::At(_), Some(_)) => {
                self.serving = None;
                self.retry.reset();
                SocketAction::ServeAgain
            }
            (SocketSeen::At(_) | SocketSeen::Timer, None) if self.retry.ready(now) => {
                SocketAction::Serve
            }
            (SocketSeen::At(_) | SocketSeen::Timer, _) => SocketAction::Keep,
            (SocketSeen::Served(file), _) => {
                self.serving = Some(file);
                self.retry.reset();
                SocketAction::Keep
            }
            (SocketSeen::ServeFailed, _) => {
                self.serving = None;
                self.retry.failed(now);
                SocketAction::Keep
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Test files: `file(1)` and `file(2)` differ; `reused(1)` has `file(1)`'s inode, created later.
    pub(crate) const fn file(n: u64) -> FileId {
        FileId {
            dev: 1,
            ino: n,
            ctime: 100,
            ctime_nsec: 0,
        }
    }

    /// A file that got `file(n)`'s inode number after it was deleted.
    pub(crate) const fn reused(n: u64) -> FileId {
        FileId {
            ctime_nsec: 4_000_000,
            ..file(n)
        }
    }

    pub(crate) const START: Duration = Duration::from_millis(100);
    pub(crate) const MAX: Duration = Duration::from_secs(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(START, Duration::from_millis(350));
        assert!(backoff.ready(t0));
        let mut waits = Vec::new();
        for _ in 0..4 {
            backoff.failed(t0);
            waits.push(backoff.until().unwrap() - t0);
        }
        assert_eq!(waits, [ms(100), ms(200), ms(350), ms(350)]);
        assert!(!backoff.ready(t0 + ms(349)));
        assert!(backoff.ready(t0 + ms(350)));
        backoff.reset();
        assert!(backoff.ready(t0));
        backoff.failed(t0);
        assert_eq!(backoff.until(), Some(t0 + ms(100)));
    }

    /// The keeper's state before a row: never served, serving `file(1)`, or backing off
    /// after a failed serve at t0 (first delay 100 ms).
    #[derive(Clone, Copy, Debug)]
    enum Before {
        Fresh,
        Serving,
        BackingOff,
    }

    fn keeper(before: Before, t0: Instant) -> Keeper {
        let mut keeper = Keeper::new(Backoff::new(START, MAX));
        match before {
            Before::Fresh => {}
            Before::Serving => {
                keeper.decide(SocketSeen::Served(file(1)), t0);
            }
            Before::BackingOff => {
                keeper.decide(SocketSeen::ServeFailed, t0);
            }
        }
        keeper
    }

    #[test]
    fn keeper_table() {
        use Before::*;
        use SocketAction::*;
        use SocketSeen::*;
        let t0 = Instant::now();
        // (before, seen, ms after t0, action, serving after, wake_at after in ms)
        type Row = (
            Before,
            SocketSeen,
            u64,
            SocketAction,
            Option<FileId>,
            Option<u64>,
        );
        let rows: [Row; 15] = [
            (Fresh, Timer, 0, Serve, None, None),
            (Fresh, At(None), 0, Serve, None, None),
            (Fresh, At(Some(file(9))), 0, Serve, None, None),
            (Fresh, Served(file(1)), 0, Keep, Some(file(1)), None),
            (Fresh, ServeFailed, 0, Keep, None, Some(100)),
            // our own bind's event, or a poll that finds our file
            (Serving, At(Some(file(1))), 0, Keep, Some(file(1)), None),
            // a kubelet restart deleted every socket in the directory
            (Serving, At(None), 0, ServeAgain, None, None),
            // replaced by another file, possibly with our inode number
            (Serving, At(Some(file(2))), 0, ServeAgain, None, None),
            (Serving, At(Some(reused(1))), 0, ServeAgain, None, None),
            (Serving, Timer, 0, Keep, Some(file(1)), None),
            (BackingOff, Timer, 50, Keep, None, Some(100)),
            (BackingOff, Timer, 100, Serve, None, Some(100)),
            (BackingOff, At(None), 50, Keep, None, Some(100)),
            (BackingOff, Served(file(3)), 100, Keep, Some(file(3)), None),
            // the second failure doubles the wait: 150 + 200
            (BackingOff, ServeFailed, 150, Keep, None, Some(350)),
        ];
        for (i, (before, seen, after, action, serving, wake)) in rows.into_iter().enumerate() {
            let mut keeper = keeper(before, t0);
            let got = keeper.decide(seen, t0 + ms(after));
            let row = format!("row {i}: {before:?} + {seen:?} at {after} ms");
            assert_eq!(got, action, "{row}");
            assert_eq!(keeper.serving(), serving, "{row}");
            assert_eq!(keeper.wake_at(), wake.map(|w| t0 + ms(w)), "{row}");
        }
    }

    #[test]
    fn a_lost_socket_is_served_again_at_once_even_after_failures() {
        let t0 = Instant::now();
        let mut keeper = keeper(Before::BackingOff, t0);
        keeper.decide(SocketSeen::ServeFailed, t0 + ms(100));
        keeper.decide(SocketSeen::Served(file(1)), t0 + ms(300));
        assert_eq!(
            keeper.decide(SocketSeen::At(None), t0 + ms(301)),
            SocketAction::ServeAgain
        );
        // and a failure right after starts from the first delay again
        keeper.decide(SocketSeen::ServeFailed, t0 + ms(302));
        assert_eq!(keeper.wake_at(), Some(t0 + ms(402)));
    }
}
