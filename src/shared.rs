//! The session behind a lock, shared by the driver and every handle.

use event_listener::Event;
use parking_lot::Mutex;

use crate::session::Session;

pub(crate) struct Shared {
    session: Mutex<Session>,
    /// Notified when a stream can be accepted or the session ends.
    pub(crate) accept_event: Event,
    /// Notified when the write half closes or the session ends.
    pub(crate) state_event: Event,
    /// Notified when a stream may be opened, or the session begins to end.
    pub(crate) open_event: Event,
}

impl Shared {
    pub(crate) fn new(session: Session) -> Self {
        Shared {
            session: Mutex::new(session),
            accept_event: Event::new(),
            state_event: Event::new(),
            open_event: Event::new(),
        }
    }

    /// Runs `f` on the session under the lock, then wakes whatever `f` made ready, after the
    /// lock is released so that woken tasks do not contend for it.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let mut session = self.session.lock();
        let result = f(&mut session);
        let wakers = session.take_wakers();
        let notify_accept = std::mem::take(&mut session.notify_accept);
        let notify_state = std::mem::take(&mut session.notify_state);
        let notify_open = std::mem::take(&mut session.notify_open);
        drop(session);
        for waker in wakers {
            waker.wake();
        }
        if notify_accept {
            self.accept_event.notify(usize::MAX);
        }
        if notify_state {
            self.state_event.notify(usize::MAX);
        }
        if notify_open {
            self.open_event.notify(usize::MAX);
        }
        result
    }
}
