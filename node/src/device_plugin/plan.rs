//! The device plugin's lifecycle as a pure function: from what was observed (its socket and
//! `kubelet.sock` as they are now, serve and `Register` outcomes, closed `ListAndWatch`
//! streams, timers) to what to do next (serve, register, count a kubelet restart).
//!
//! Rules (DESIGN §3a): serve first, then register; a kubelet restart (every socket deleted,
//! `kubelet.sock` created anew) or a dropped stream causes exactly one new registration;
//! failed `Register` calls are retried with bounded backoff, and a *new* `kubelet.sock`
//! cuts the backoff short: failures against the kubelet that died say nothing about the
//! one that just started. Files are compared by [`FileId`], never by inode alone.

use crate::keeper::{Backoff, FileId, Keeper, SocketAction, SocketSeen};
use std::time::{Duration, Instant};

/// First retry delay after a failed `Register` or serve. Short, because inotify reports a
/// new `kubelet.sock` at bind(2), and a connection is refused until the kubelet's listen(2).
pub const BACKOFF_START: Duration = Duration::from_millis(50);
/// Longest retry delay; a new `kubelet.sock` still triggers an attempt at once.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the shell observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The plugin socket's path, looked at after a directory event or at a poll.
    PluginSocket(Option<FileId>),
    /// `kubelet.sock`, looked at after a directory event or at a poll.
    KubeletSocket(Option<FileId>),
    /// The plugin socket was bound and is served.
    Served(FileId),
    /// Binding or serving the plugin socket failed.
    ServeFailed,
    /// `Register` succeeded; streams numbered `first_stream` or higher belong to it.
    Registered {
        /// `kubelet.sock` as the shell saw it right before the call: the kubelet it reached.
        kubelet: Option<FileId>,
        /// The stream count read just before the call.
        first_stream: u64,
    },
    /// `Register` failed.
    RegisterFailed {
        /// `kubelet.sock` as the shell saw it right before the call.
        kubelet: Option<FileId>,
    },
    /// The kubelet closed `ListAndWatch` stream number `id`.
    StreamClosed {
        /// The stream's sequence number.
        id: u64,
    },
    /// The time from [`Plan::wake_at`] came.
    Timer,
}

/// Why a registration is owed; for the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The plugin socket was served anew (at start, or after it was removed).
    Served,
    /// A new `kubelet.sock` appeared.
    NewKubelet,
    /// The kubelet closed the current `ListAndWatch` stream.
    StreamClosed,
    /// A failed attempt's backoff is over.
    Retry,
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Serve the plugin socket: first start, or a retry after a failed serve.
    Serve,
    /// Our socket was removed or replaced: stop that server and serve the path anew.
    ServeAgain,
    /// Call `Register` on `kubelet.sock`.
    Register(Why),
    /// Count one kubelet restart (once per restart, however many signs of it arrive).
    CountRestart,
}

/// The device plugin's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    socket: Keeper,
    /// `kubelet.sock` as last seen.
    kubelet: Option<FileId>,
    /// The `kubelet.sock` of the last successful `Register`.
    registered: Option<FileId>,
    /// The `kubelet.sock` of the last attempt.
    attempted: Option<FileId>,
    /// A registration is owed.
    owed: bool,
    /// Streams numbered this or higher belong to the current registration.
    first_stream: u64,
    retry: Backoff,
    /// The current restart was already counted.
    restart_counted: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Plan::new()
    }
}

impl Plan {
    /// Nothing served, nothing seen, a registration owed.
    pub const fn new() -> Self {
        Plan {
            socket: Keeper::new(Backoff::new(BACKOFF_START, BACKOFF_MAX)),
            kubelet: None,
            registered: None,
            attempted: None,
            owed: true,
            first_stream: 0,
            retry: Backoff::new(BACKOFF_START, BACKOFF_MAX),
            restart_counted: false,
        }
    }

    /// When the shell should feed [`Seen::Timer`] unless something else happens first.
    pub fn wake_at(&self) -> Option<Instant> {
        let register = match (self.owed, self.kubelet, self.socket.serving()) {
            (true, Some(_), Some(_)) => self.retry.until(),
            _ => None,
        };
        match (self.socket.wake_at(), register) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Decides what to do after `seen`, at `now`. The shell does the actions in order and
    /// feeds each outcome back.
    pub fn decide(&mut self, seen: Seen, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match seen {
            Seen::PluginSocket(file) => match self.socket.decide(SocketSeen::At(file), now) {
                SocketAction::Serve => actions.push(Action::Serve),
                SocketAction::ServeAgain => {
                    // The kubelet deletes every socket in the directory when it starts.
                    self.count_restart(&mut actions);
                    actions.push(Action::ServeAgain);
                }
                SocketAction::Keep => self.try_register(now, Why::Retry, &mut actions),
            },
            Seen::KubeletSocket(file) => {
                self.kubelet = file;
                let why = match file {
                    Some(_) if file != self.registered => {
                        if self.registered.is_some() && !self.owed {
                            self.count_restart(&mut actions);
                        }
                        self.owed = true;
                        if file != self.attempted {
                            // A kubelet we have not tried yet: no reason to wait.
                            self.retry.reset();
                        }
                        Why::NewKubelet
                    }
                    _ => Why::Retry,
                };
                self.try_register(now, why, &mut actions);
            }
            Seen::Served(file) => {
                self.socket.decide(SocketSeen::Served(file), now);
                // A new socket needs a new registration, at once.
                self.owed = true;
                self.retry.reset();
                self.try_register(now, Why::Served, &mut actions);
            }
            Seen::ServeFailed => {
                self.socket.decide(SocketSeen::ServeFailed, now);
            }
            // The plan's own view of kubelet.sock may predate the socket being served
            // again; the shell's look right before the call is the fresher one.
            Seen::Registered {
                kubelet,
                first_stream,
            } => {
                self.kubelet = kubelet;
                self.attempted = kubelet;
                self.registered = kubelet;
                self.owed = false;
                self.first_stream = first_stream;
                self.retry.reset();
                self.restart_counted = false;
            }
            Seen::RegisterFailed { kubelet } => {
                self.kubelet = kubelet;
                self.attempted = kubelet;
                self.retry.failed(now);
            }
            Seen::StreamClosed { id } => {
                // Streams of an earlier registration end when their kubelet goes; only the
                // current one's end means the kubelet wants us to register again.
                if id >= self.first_stream && !self.owed {
                    self.owed = true;
                    self.retry.reset();
                    self.try_register(now, Why::StreamClosed, &mut actions);
                }
            }
            Seen::Timer => match self.socket.decide(SocketSeen::Timer, now) {
                SocketAction::Serve | SocketAction::ServeAgain => actions.push(Action::Serve),
                SocketAction::Keep => self.try_register(now, Why::Retry, &mut actions),
            },
        }
        actions
    }

    fn count_restart(&mut self, actions: &mut Vec<Action>) {
        if !self.restart_counted {
            self.restart_counted = true;
            actions.push(Action::CountRestart);
        }
    }

    /// Register when one is owed, our socket is served (the kubelet dials back inside
    /// `Register`), `kubelet.sock` exists and no backoff runs.
    fn try_register(&mut self, now: Instant, why: Why, actions: &mut Vec<Action>) {
        if self.owed
            && self.socket.serving().is_some()
            && self.kubelet.is_some()
            && self.retry.ready(now)
        {
            actions.push(Action::Register(why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keeper::tests::{file, reused};
    use Action::*;

    const SOCKET: u64 = 1;
    const SOCKET_AGAIN: u64 = 2;
    const KUBELET: u64 = 10;
    const NEW_KUBELET: u64 = 11;
    const K0: Option<FileId> = Some(file(KUBELET));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds `steps` (milliseconds after t0, what was seen) and returns every step's actions.
    fn run(plan: &mut Plan, t0: Instant, steps: &[(u64, Seen)]) -> Vec<Vec<Action>> {
        steps
            .iter()
            .map(|&(at, seen)| plan.decide(seen, t0 + ms(at)))
            .collect()
    }

    /// Started, served and registered with `kubelet.sock` = `file(KUBELET)` at t0, one stream open.
    fn registered(t0: Instant) -> Plan {
        let mut plan = Plan::new();
        let got = run(
            &mut plan,
            t0,
            &[
                (0, Seen::Timer),
                (0, Seen::Served(file(SOCKET))),
                (0, Seen::KubeletSocket(Some(file(KUBELET)))),
                (
                    0,
                    Seen::Registered {
                        kubelet: K0,
                        first_stream: 0,
                    },
                ),
            ],
        );
        assert_eq!(
            got,
            [vec![Serve], vec![], vec![Register(Why::NewKubelet)], vec![]]
        );
        assert!(!plan.owed);
        plan
    }

    /// The start and the steady state: each row is (state before, what was seen, actions).
    #[test]
    fn single_observation_table() {
        let t0 = Instant::now();
        let fresh = Plan::new;
        let registered = || registered(t0);
        let serving_no_kubelet = || {
            let mut plan = Plan::new();
            plan.decide(Seen::Served(file(SOCKET)), t0);
            plan
        };
        type Row<'a> = (&'a str, &'a dyn Fn() -> Plan, Seen, Vec<Action>, bool);
        // (name, before, seen, actions, registration owed after)
        let rows: Vec<Row> = vec![
            ("start: serve first", &fresh, Seen::Timer, vec![Serve], true),
            (
                "start: no socket yet",
                &fresh,
                Seen::PluginSocket(None),
                vec![Serve],
                true,
            ),
            (
                "start: a stale socket file",
                &fresh,
                Seen::PluginSocket(Some(file(9))),
                vec![Serve],
                true,
            ),
            (
                "start: kubelet.sock before serving: wait",
                &fresh,
                Seen::KubeletSocket(Some(file(KUBELET))),
                vec![],
                true,
            ),
            (
                "served, kubelet absent: wait",
                &serving_no_kubelet,
                Seen::KubeletSocket(None),
                vec![],
                true,
            ),
            (
                "served, kubelet appears",
                &serving_no_kubelet,
                Seen::KubeletSocket(Some(file(KUBELET))),
                vec![Register(Why::NewKubelet)],
                true,
            ),
            (
                "registered: our own socket",
                &registered,
                Seen::PluginSocket(Some(file(SOCKET))),
                vec![],
                false,
            ),
            (
                "registered: the same kubelet.sock",
                &registered,
                Seen::KubeletSocket(Some(file(KUBELET))),
                vec![],
                false,
            ),
            (
                "registered: poll or timer",
                &registered,
                Seen::Timer,
                vec![],
                false,
            ),
            (
                "registered: kubelet.sock gone",
                &registered,
                Seen::KubeletSocket(None),
                vec![],
                false,
            ),
            (
                "registered: our socket deleted",
                &registered,
                Seen::PluginSocket(None),
                vec![CountRestart, ServeAgain],
                false,
            ),
            (
                "registered: our socket replaced",
                &registered,
                Seen::PluginSocket(Some(file(9))),
                vec![CountRestart, ServeAgain],
                false,
            ),
            (
                "registered: a new kubelet.sock",
                &registered,
                Seen::KubeletSocket(Some(file(NEW_KUBELET))),
                vec![CountRestart, Register(Why::NewKubelet)],
                true,
            ),
            // Inode reused: the same number, created later. Never compare inodes alone.
            (
                "registered: kubelet.sock recreated with our inode",
                &registered,
                Seen::KubeletSocket(Some(reused(KUBELET))),
                vec![CountRestart, Register(Why::NewKubelet)],
                true,
            ),
            (
                "registered: current stream closed",
                &registered,
                Seen::StreamClosed { id: 0 },
                vec![Register(Why::StreamClosed)],
                true,
            ),
            (
                "registered: served again",
                &registered,
                Seen::Served(file(SOCKET_AGAIN)),
                vec![Register(Why::Served)],
                true,
            ),
        ];
        for (name, before, seen, actions, owed) in rows {
            let mut plan = before();
            assert_eq!(plan.decide(seen, t0 + ms(1)), actions, "{name}");
            assert_eq!(plan.owed, owed, "{name}");
        }
    }

    /// Outcomes of the actions, and timers.
    #[test]
    fn outcome_table() {
        let t0 = Instant::now();
        // (name, steps after `registered`, the last step's actions, owed after, wake_at after)
        type Row = (
            &'static str,
            Vec<(u64, Seen)>,
            Vec<Action>,
            bool,
            Option<u64>,
        );
        let closed = (10, Seen::StreamClosed { id: 0 });
        let rows: Vec<Row> = vec![
            (
                "register fails: back off 50 ms",
                vec![closed, (20, Seen::RegisterFailed { kubelet: K0 })],
                vec![],
                true,
                Some(70),
            ),
            (
                "backoff not over",
                vec![
                    closed,
                    (20, Seen::RegisterFailed { kubelet: K0 }),
                    (69, Seen::Timer),
                ],
                vec![],
                true,
                Some(70),
            ),
            (
                "backoff over",
                vec![
                    closed,
                    (20, Seen::RegisterFailed { kubelet: K0 }),
                    (70, Seen::Timer),
                ],
                vec![Register(Why::Retry)],
                true,
                Some(70),
            ),
            (
                "a poll after the backoff retries too",
                vec![
                    closed,
                    (20, Seen::RegisterFailed { kubelet: K0 }),
                    (80, Seen::KubeletSocket(Some(file(KUBELET)))),
                ],
                vec![Register(Why::Retry)],
                true,
                Some(70),
            ),
            (
                "second failure: 100 ms",
                vec![
                    closed,
                    (20, Seen::RegisterFailed { kubelet: K0 }),
                    (70, Seen::Timer),
                    (71, Seen::RegisterFailed { kubelet: K0 }),
                ],
                vec![],
                true,
                Some(171),
            ),
            (
                "retry succeeds",
                vec![
                    closed,
                    (20, Seen::RegisterFailed { kubelet: K0 }),
                    (70, Seen::Timer),
                    (
                        71,
                        Seen::Registered {
                            kubelet: K0,
                            first_stream: 1,
                        },
                    ),
                ],
                vec![],
                false,
                None,
            ),
            (
                "a new kubelet.sock cuts the backoff short",
                vec![
                    closed,
                    (20, Seen::RegisterFailed { kubelet: K0 }),
                    (30, Seen::KubeletSocket(Some(reused(KUBELET)))),
                ],
                vec![Register(Why::NewKubelet)],
                true,
                None,
            ),
            // inotify reports the new kubelet.sock at bind(2); until its listen(2) a
            // connection is refused. The retry comes after the first delay, not after
            // the delays grown against the kubelet that died.
            (
                "a new kubelet.sock that refuses at first",
                vec![
                    closed,
                    (20, Seen::RegisterFailed { kubelet: K0 }),
                    (70, Seen::Timer),
                    (71, Seen::RegisterFailed { kubelet: K0 }),
                    (200, Seen::KubeletSocket(Some(reused(KUBELET)))),
                    (
                        201,
                        Seen::RegisterFailed {
                            kubelet: Some(reused(KUBELET)),
                        },
                    ),
                ],
                vec![],
                true,
                Some(251),
            ),
            (
                "the new kubelet.sock retried after the first delay",
                vec![
                    closed,
                    (20, Seen::RegisterFailed { kubelet: K0 }),
                    (70, Seen::Timer),
                    (71, Seen::RegisterFailed { kubelet: K0 }),
                    (200, Seen::KubeletSocket(Some(reused(KUBELET)))),
                    (
                        201,
                        Seen::RegisterFailed {
                            kubelet: Some(reused(KUBELET)),
                        },
                    ),
                    (251, Seen::Timer),
                ],
                vec![Register(Why::Retry)],
                true,
                Some(251),
            ),
            (
                "no timer while kubelet.sock is absent",
                vec![
                    closed,
                    (20, Seen::RegisterFailed { kubelet: K0 }),
                    (30, Seen::KubeletSocket(None)),
                ],
                vec![],
                true,
                None,
            ),
            (
                "an old stream closing after a new registration",
                vec![
                    closed,
                    (
                        20,
                        Seen::Registered {
                            kubelet: K0,
                            first_stream: 1,
                        },
                    ),
                    (30, Seen::StreamClosed { id: 0 }),
                ],
                vec![],
                false,
                None,
            ),
            (
                "the new registration's stream closing",
                vec![
                    closed,
                    (
                        20,
                        Seen::Registered {
                            kubelet: K0,
                            first_stream: 1,
                        },
                    ),
                    (30, Seen::StreamClosed { id: 1 }),
                ],
                vec![Register(Why::StreamClosed)],
                true,
                None,
            ),
            (
                "a second stream closing while owed",
                vec![closed, (20, Seen::StreamClosed { id: 0 })],
                vec![],
                true,
                None,
            ),
            (
                "serving again fails: back off",
                vec![(10, Seen::PluginSocket(None)), (11, Seen::ServeFailed)],
                vec![],
                false,
                Some(61),
            ),
            (
                "serving again: retry after the backoff",
                vec![
                    (10, Seen::PluginSocket(None)),
                    (11, Seen::ServeFailed),
                    (61, Seen::Timer),
                ],
                vec![Serve],
                false,
                Some(61),
            ),
            (
                "no register while not serving",
                vec![
                    (10, Seen::PluginSocket(None)),
                    (11, Seen::ServeFailed),
                    (20, Seen::KubeletSocket(Some(file(NEW_KUBELET)))),
                ],
                vec![],
                true,
                Some(61),
            ),
        ];
        for (name, steps, actions, owed, wake) in rows {
            let mut plan = registered(t0);
            let got = run(&mut plan, t0, &steps);
            assert_eq!(got.last(), Some(&actions), "{name}: {got:?}");
            assert_eq!(plan.owed, owed, "{name}");
            assert_eq!(plan.wake_at(), wake.map(|w| t0 + ms(w)), "{name}");
        }
    }

    /// DESIGN §3a's kubelet restart, as the directory and the streams show it, in every
    /// order the shell may see the signs: exactly one `Register`, and it goes at once.
    /// (Orders 3 and 4 are what polling sees: the whole restart between two looks.)
    #[test]
    fn a_kubelet_restart_causes_one_registration_in_every_order() {
        let t0 = Instant::now();
        let new = Some(reused(KUBELET)); // ext4 hands the new kubelet.sock the old inode
        // 1. streams close (200 ms of failed attempts against the dead kubelet follow);
        // 3. every socket deleted; 4. kubelet.sock created anew.
        let dying = [(0, Seen::StreamClosed { id: 0 }), (101, Seen::Timer)];
        // What the shell finds at kubelet.sock when it registers.
        let kubelet_at = |at: u64| match at {
            ..200 => K0,
            200 => None,
            _ => new,
        };
        let orders: [&[(u64, Seen)]; 4] = [
            &[
                (200, Seen::PluginSocket(None)),
                (200, Seen::KubeletSocket(None)),
                (201, Seen::KubeletSocket(new)),
            ],
            &[
                (200, Seen::KubeletSocket(None)),
                (200, Seen::PluginSocket(None)),
                (201, Seen::KubeletSocket(new)),
            ],
            // both events read after the new kubelet.sock exists
            &[
                (201, Seen::PluginSocket(None)),
                (201, Seen::KubeletSocket(new)),
            ],
            &[
                (201, Seen::KubeletSocket(new)),
                (201, Seen::PluginSocket(None)),
            ],
        ];
        for (n, order) in orders.iter().enumerate() {
            let mut plan = registered(t0);
            let mut registers = Vec::new();
            let mut restarts = 0;
            let mut queue: Vec<(u64, Seen)> = dying.iter().chain(order.iter()).copied().collect();
            queue.reverse();
            while let Some((at, seen)) = queue.pop() {
                for action in plan.decide(seen, t0 + ms(at)) {
                    // Play the shell: serving works; Register works only against the new
                    // kubelet, which dials back our new socket inside the call.
                    let outcome = match action {
                        Serve | ServeAgain => Seen::Served(file(SOCKET_AGAIN)),
                        Register(_)
                            if kubelet_at(at) == new
                                && plan.socket.serving() == Some(file(SOCKET_AGAIN)) =>
                        {
                            registers.push(at);
                            Seen::Registered {
                                kubelet: new,
                                first_stream: 1,
                            }
                        }
                        Register(_) => Seen::RegisterFailed {
                            kubelet: kubelet_at(at),
                        },
                        CountRestart => {
                            restarts += 1;
                            continue;
                        }
                    };
                    queue.push((at, outcome));
                }
            }
            // Later looks at the directory and the timer change nothing.
            for seen in [
                Seen::PluginSocket(Some(file(SOCKET_AGAIN))),
                Seen::KubeletSocket(new),
                Seen::Timer,
            ] {
                assert_eq!(plan.decide(seen, t0 + ms(5000)), [], "order {n}: {seen:?}");
            }
            assert_eq!(
                registers,
                [201],
                "order {n}: one Register, as soon as the new kubelet.sock is seen"
            );
            assert_eq!(restarts, 1, "order {n}");
            assert!(!plan.owed, "order {n}");
        }
    }
}
