//! The ring: a submission queue we write operations into and a completion queue the kernel
//! writes their results into, both shared memory between this process and the kernel.
//!
//! [`Ring`] wraps the [`io_uring`] crate's [`IoUring`] with the three things the event loop
//! needs and nothing more: [`push`](Ring::push) an operation (submitting to make room when the
//! queue is full, so that no operation is ever dropped), [`next_completion`](Ring::next_completion)
//! (submitting everything pushed so far and sleeping until something completes), and
//! [`cancel_all`](Ring::cancel_all) for shutting down. It also says clearly, at startup, when
//! this system refuses io_uring ([`IoUringUnavailable`]).
//!
//! step08 reuses this file unchanged: one `Ring` per core.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::time::Duration;

use io_uring::types::{CancelBuilder, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue};

/// One io_uring instance and the completions taken from it but not handled yet.
pub struct Ring {
    ring: IoUring,
    /// Completions moved off the kernel's completion queue, oldest first. Moving them out at
    /// once frees the queue for the kernel while the event loop handles them one by one.
    completions: VecDeque<cqueue::Entry>,
    /// Batch waiting, when asked for ([`wait_for_batches`](Ring::wait_for_batches)): how
    /// long a wait holds out for the whole batch, where the kernel can read it.
    batch_wait: Option<Timespec>,
    /// The same, for `--trace` to say (a `Timespec` cannot be read back).
    batch_timeout: Duration,
    /// Operations pushed since the last wait whose completions come at once (sends that the
    /// kernel completes while submitting them).
    expected: usize,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("submission_queue", &self.ring.params().sq_entries())
            .field("completion_queue", &self.ring.params().cq_entries())
            .field("completions_waiting", &self.completions.len())
            .finish()
    }
}

impl Ring {
    /// Sets up a ring with room for `entries` submissions at a time, after checking that the
    /// kernel knows every operation in `needed`.
    ///
    /// The completion queue is made larger than the submission queue: one submitted operation
    /// can complete many times (multishot operations, step08), and thousands of connections
    /// can each have a receive completing at once. When the completion queue is full anyway,
    /// the kernel keeps the extra completions on a list of its own (`IORING_FEAT_NODROP`,
    /// Linux 5.5) and nothing is lost.
    ///
    /// # Errors
    ///
    /// [`IoUringUnavailable`] (in an [`io::Error`]) when the kernel refuses io_uring or lacks
    /// one of the `needed` operations; other errors (out of file descriptors) as they come.
    pub fn new(entries: u32, needed: &[(u8, &'static str)]) -> io::Result<Ring> {
        Ring::with_builder(
            IoUring::builder().setup_cqsize(entries * 8),
            entries,
            needed,
        )
    }

    /// Like [`new`](Ring::new), with the ring's setup flags chosen by the caller (step08 asks
    /// for a few that pay off when one thread owns the ring).
    ///
    /// # Errors
    ///
    /// As for [`new`](Ring::new).
    pub fn with_builder(
        builder: &io_uring::Builder,
        entries: u32,
        needed: &[(u8, &'static str)],
    ) -> io::Result<Ring> {
        let ring = builder.build(entries).map_err(IoUringUnavailable::check)?;
        let mut probe = Probe::new();
        // Probing needs Linux 5.6; a kernel that old lacks what we need anyway.
        if ring.submitter().register_probe(&mut probe).is_err() {
            return Err(IoUringUnavailable::missing("IORING_REGISTER_PROBE"));
        }
        if let Some((_, name)) = needed.iter().find(|(code, _)| !probe.is_supported(*code)) {
            return Err(IoUringUnavailable::missing(name));
        }
        Ok(Ring {
            ring,
            completions: VecDeque::new(),
            batch_wait: None,
            batch_timeout: Duration::ZERO,
            expected: 0,
        })
    }

    /// The underlying ring, for registering things with it (step08's buffer rings).
    pub fn io_uring(&self) -> &IoUring {
        &self.ring
    }

    // ANCHOR: push
    /// Queues `entry` for submission. When the submission queue is full, the queued entries
    /// are handed to the kernel first, which frees their slots: an operation is never dropped.
    ///
    /// Nothing reaches the kernel here unless the queue was full; [`next_completion`]
    /// submits everything queued in one system call.
    ///
    /// # Safety
    ///
    /// Every buffer and file descriptor `entry` points to must stay valid until the kernel is
    /// done with them: until `entry`'s (last) completion has been returned by
    /// [`next_completion`]. Valid means not freed, not moved, not reused for something else,
    /// and, for a buffer the kernel writes, not read or written by us meanwhile. This is the
    /// contract of completion-based I/O: the kernel works on our memory after the call that
    /// started the operation has returned.
    ///
    /// [`next_completion`]: Ring::next_completion
    pub unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: our caller promises that what `entry` points to outlives the operation.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            // Full. Submitting moves the queued entries into the kernel, emptying the queue.
            self.submit_to_make_room()?;
        }
    }
    // ANCHOR_END: push

    /// Queues `entries`, a chain linked with `IOSQE_IO_LINK`, all at once: a chain split over
    /// two submissions would be two chains, and the second half would start without waiting
    /// for the first. When the queue lacks room for all of them, what is queued is submitted
    /// first.
    ///
    /// # Safety
    ///
    /// As for [`push`](Ring::push), for every entry.
    pub unsafe fn push_chain(&mut self, entries: &[&squeue::Entry]) -> io::Result<()> {
        loop {
            let mut queue = self.ring.submission();
            if queue.capacity() - queue.len() >= entries.len() {
                for entry in entries {
                    // SAFETY: our caller promises that what the entries point to outlives
                    // them. There is room for every entry (checked above), and nothing is
                    // submitted between these pushes: the chain goes to the kernel whole.
                    if unsafe { queue.push(entry) }.is_err() {
                        unreachable!("room for the whole chain was checked");
                    }
                }
                return Ok(());
            }
            drop(queue);
            self.submit_to_make_room()?;
        }
    }

    /// Hands the queued entries to the kernel without waiting for anything: the queue has no
    /// room for what comes next. (An `io_uring_enter` of its own, which a loop that pushes
    /// fewer entries per turn than the queue holds never makes.)
    fn submit_to_make_room(&mut self) -> io::Result<()> {
        tracing::trace!(
            "io_uring_enter: submit {}, no wait: the submission queue is full",
            self.ring.submission().len()
        );
        match self.ring.submit() {
            Ok(_) => Ok(()),
            Err(error) => self.recover(error),
        }
    }

    /// The next completion, in the order the kernel posted them. When none is waiting, this
    /// submits everything pushed since the last call and sleeps until at least one operation
    /// completes: the event loop's only system call, and its only place to wait.
    ///
    /// # Errors
    ///
    /// When the ring itself fails, which leaves the server unable to go on.
    pub fn next_completion(&mut self) -> io::Result<cqueue::Entry> {
        loop {
            if let Some(completion) = self.completions.pop_front() {
                return Ok(completion);
            }
            // `--trace`: the enter is a span (a bar in the timeline: the thread asleep in the
            // kernel), and a line says what it submitted and what came back.
            let enter = tracing::enabled!(tracing::Level::TRACE).then(|| self.trace_enter());
            let entered = self.submit_and_wait();
            if entered.is_ok() {
                self.take_completions();
            }
            if let Some(enter) = enter {
                enter.returned(self.completions.len(), entered.as_ref().err());
            }
            if let Err(error) = entered {
                self.recover(error)?;
            }
        }
    }

    /// `--trace`: what the enter about to be made submits and waits for, as a span entered
    /// until it returns.
    fn trace_enter(&mut self) -> TracedEnter {
        let submit = self.ring.submission().len();
        // What `submit_and_wait` will ask for (it takes `expected` when it does).
        let wait = match &self.batch_wait {
            Some(_) if self.expected > 0 => format!(
                "wait for {} or {} ms",
                self.expected + 1,
                self.batch_timeout.as_millis()
            ),
            _ => "wait for 1".to_string(),
        };
        let span = tracing::trace_span!("enter", submit, wait = %wait).entered();
        TracedEnter { span, submit, wait }
    }

    // ANCHOR: batch_wait
    /// Submits what was pushed and waits: for one completion, or, with batch waiting, for
    /// the completions of the operations [`expect`](Ring::expect)ed and one more, for at most
    /// the batch wait (then for whatever has come, or, if nothing has, for one).
    ///
    /// The point: a send that the kernel completes as it is submitted posts its completion
    /// at once, and a wait for "one" would end right there, to be followed by a second system
    /// call for the request that comes next. Waiting for both takes them in one. The timeout
    /// bounds what the batch can cost a completion that has nothing behind it (the last
    /// answer before a client goes quiet, a send that must wait for room): it waits that
    /// much longer to be handled.
    ///
    /// (Linux 6.12 has a flag for this, `min_wait_usec`; on the machine the results were
    /// measured on, it cost 6 µs of CPU per request where the timeout cost nothing.)
    fn submit_and_wait(&mut self) -> io::Result<usize> {
        let expected = std::mem::take(&mut self.expected);
        match &self.batch_wait {
            Some(timeout) if expected > 0 => {
                let args = SubmitArgs::new().timespec(timeout);
                match self.ring.submitter().submit_with_args(expected + 1, &args) {
                    // The batch did not come whole in time: handle what did.
                    Err(error) if error.raw_os_error() == Some(libc::ETIME) => Ok(0),
                    other => other,
                }
            }
            _ => self.ring.submit_and_wait(1),
        }
    }
    // ANCHOR_END: batch_wait

    /// Turns batch waiting on: a wait after submitting sends holds out for their
    /// completions and the next one for at most `timeout` (Linux 5.11).
    pub fn wait_for_batches(&mut self, timeout: std::time::Duration) {
        self.batch_wait = Some(Timespec::from(timeout));
        self.batch_timeout = timeout;
    }

    /// Says that the operation just pushed completes at once (a send to a socket with room):
    /// with batch waiting, the next wait counts on its completion and waits for one more.
    pub fn expect(&mut self) {
        self.expected += 1;
    }

    /// Moves every completion the kernel has posted into our own queue.
    fn take_completions(&mut self) {
        self.completions.extend(self.ring.completion());
    }

    /// What to do when entering the kernel failed.
    fn recover(&mut self, error: io::Error) -> io::Result<()> {
        match error.raw_os_error() {
            // A signal arrived while waiting: nothing went wrong, go round again.
            Some(libc::EINTR) => Ok(()),
            // The completion queue is full and the kernel wants room before it takes more
            // submissions: move the completions out (they are handled later, in order).
            Some(libc::EBUSY) => {
                tracing::trace!("io_uring_enter: EBUSY: the completion queue is full");
                self.take_completions();
                Ok(())
            }
            _ => Err(error),
        }
    }

    /// Cancels every operation in flight and returns once the kernel has let go of all of
    /// them (Linux 6.0).
    ///
    /// After this, no buffer or file descriptor is in use by the kernel any more, so the
    /// connections that own them may be dropped. Their completions (`-ECANCELED`) are left
    /// unread.
    ///
    /// # Errors
    ///
    /// When the kernel cannot cancel synchronously; the caller must then not free what
    /// operations in flight point to.
    pub fn cancel_all(&mut self) -> io::Result<()> {
        // Operations pushed but never submitted are simply never started: dropping the ring
        // discards them. Only submitted ones can be in flight.
        self.ring
            .submitter()
            .register_sync_cancel(None, CancelBuilder::any())
    }
}

/// `--trace`: an enter on its way into the kernel ([`Ring::trace_enter`]).
struct TracedEnter {
    span: tracing::span::EnteredSpan,
    submit: usize,
    wait: String,
}

impl TracedEnter {
    /// The enter returned, and `completions` were taken off the queue (or it failed with
    /// `error`): the span ends, and one line says it all: `io_uring_enter: submit 2, wait for
    /// 1 → 1 completion`.
    fn returned(self, completions: usize, error: Option<&io::Error>) {
        drop(self.span);
        let TracedEnter { submit, wait, .. } = self;
        let came = match error {
            Some(error) if error.raw_os_error() == Some(libc::EINTR) => {
                "-EINTR: a signal came, nothing went wrong".to_string()
            }
            Some(error) => error.to_string(),
            None => crate::trace::count(completions, "completion"),
        };
        tracing::trace!("io_uring_enter: submit {submit}, {wait} → {came}");
    }
}

/// The kernel refuses io_uring here, or lacks an operation a step needs.
///
/// Common causes: `kernel.io_uring_disabled` set to 1 or 2 (some distributions, hardened
/// servers), a seccomp filter (Docker's default profile blocks `io_uring_setup`, so do gVisor
/// and many CI sandboxes), a kernel built without it, or, before Linux 5.12, a locked-memory
/// limit too small for the ring. The error says which, in one line, and points at step06:
/// the same server on readiness, which runs anywhere.
#[derive(Debug)]
pub struct IoUringUnavailable {
    cause: String,
}

impl IoUringUnavailable {
    /// Turns a failed `io_uring_setup` into this error when it is a refusal, and passes any
    /// other error (out of file descriptors, say) through unchanged.
    fn check(setup_error: io::Error) -> io::Error {
        let hint = match setup_error.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => {
                "; see /proc/sys/kernel/io_uring_disabled, or a seccomp filter such as a \
                 container's"
            }
            Some(libc::ENOSYS) => "; this kernel was built without it, or a sandbox hides it",
            Some(libc::ENOMEM) => "; raise the locked-memory limit (ulimit -l)",
            _ => return setup_error,
        };
        io::Error::new(
            io::ErrorKind::Unsupported,
            IoUringUnavailable {
                cause: format!("io_uring_setup: {setup_error}{hint}"),
            },
        )
    }

    /// The ring works but the kernel is too old for an operation this step uses.
    fn missing(operation: &str) -> io::Error {
        IoUringUnavailable::error(format!("this kernel lacks {operation}"))
    }

    /// The refusal, as the `io::Error` that `bind` returns.
    fn error(cause: String) -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, IoUringUnavailable { cause })
    }

    /// Whether `error` is this refusal (as opposed to, say, an address already in use).
    pub fn is(error: &io::Error) -> bool {
        error
            .get_ref()
            .is_some_and(|inner| inner.is::<IoUringUnavailable>())
    }
}

impl fmt::Display for IoUringUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "io_uring is not available here ({}); run step06 for the same server on readiness",
            self.cause
        )
    }
}

impl std::error::Error for IoUringUnavailable {}

/// Checks that the kernel is at least Linux `major.minor`, for what the probe in
/// [`Ring::new`] cannot see: flags and variants of operations it knows (cancelling by file
/// descriptor, multishot receives, passing flags with a message to another ring).
///
/// A kernel with such features backported under an older version number is refused too;
/// the error says which version was found.
///
/// # Errors
///
/// [`IoUringUnavailable`] when the kernel is older.
pub fn require_linux(major: u32, minor: u32, why: &str) -> io::Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let found = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if found >= (major, minor) {
        return Ok(());
    }
    Err(IoUringUnavailable::error(format!(
        "this is Linux {}, and {why} needs {major}.{minor} or later",
        release.trim()
    )))
}

/// The operations step07 submits, with their names for [`IoUringUnavailable`].
pub const STEP07_OPERATIONS: &[(u8, &str)] = &[
    (opcode::Accept::CODE, "IORING_OP_ACCEPT"),
    (opcode::Recv::CODE, "IORING_OP_RECV"),
    (opcode::Send::CODE, "IORING_OP_SEND"),
    (opcode::Timeout::CODE, "IORING_OP_TIMEOUT"),
    (opcode::LinkTimeout::CODE, "IORING_OP_LINK_TIMEOUT"),
    (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    (opcode::MsgRingData::CODE, "IORING_OP_MSG_RING"),
];
