//! Answers on their way to the client, and partial sends.
//!
//! The kernel reads a send's bytes after the call that submitted it has returned, so the
//! bytes of a send in flight belong to the kernel: appending to them could move them (a `Vec`
//! reallocates as it grows) and the kernel would read freed memory. Answers computed meanwhile
//! go elsewhere, into memory that is ours, and follow once the send has gone.

use std::io;

use io_uring::types::Fd;
use io_uring::{opcode, squeue};

use crate::ring::Ring;

/// Answers on their way to the client: the bytes of the send in flight, and the answers made
/// while it is.
///
/// The bookkeeping of partial sends, derived rather than copied: `sending[..sent]` has gone;
/// a send completing with k bytes moves `sent` on by k, and the next send offers
/// `sending[sent..]`, the rest, from offset `sent`. Answers computed while a send was in
/// flight were appended to `queued`, not to `sending`, so they go after that rest: once
/// `sending` has gone entirely, the two buffers swap (no copy, and both keep their capacity
/// for the next round).
#[derive(Debug, Default)]
pub struct Outbox {
    /// Answers not handed to the kernel yet. Always ours.
    queued: Vec<u8>,
    /// The answers of the current send. The kernel's while `in_flight`.
    sending: Vec<u8>,
    /// How many bytes of `sending` the kernel has sent so far.
    sent: usize,
    in_flight: bool,
    /// The send in flight heads a chain ([`send_then`](Self::send_then)): it posts a
    /// completion only if it fails.
    chained: bool,
}

impl Outbox {
    /// Where new answers go, behind everything already in the outbox.
    pub fn queue(&mut self) -> &mut Vec<u8> {
        &mut self.queued
    }

    /// Bytes of answers not yet sent: the rest of the send in flight, and what queued behind.
    pub fn unsent(&self) -> usize {
        self.sending.len() - self.sent + self.queued.len()
    }

    /// Whether the kernel holds a send from this outbox.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// `--trace`: where the send in flight starts in the answers it sends, and their length.
    pub fn trace_offset(&self) -> (usize, usize) {
        (self.sent, self.sending.len())
    }

    /// `--trace`: what the send in flight offers the kernel: `10 bytes`, or the rest of a
    /// partial send, `8 bytes, from 12 of 20`.
    pub fn trace_sending(&self) -> String {
        let rest = self.sending.len() - self.sent;
        match self.sent {
            0 => format!("{rest} bytes"),
            from => format!("{rest} bytes, from {from} of {}", self.sending.len()),
        }
    }

    /// Whether the send in flight heads a chain.
    pub fn chained(&self) -> bool {
        self.in_flight && self.chained
    }

    /// The operation linked behind the send in flight completed: the send went out whole.
    /// (Nothing to do when no chained send is in flight.)
    pub fn on_chain_done(&mut self) {
        if self.chained() {
            self.sent = self.sending.len();
            self.in_flight = false;
            self.chained = false;
        }
    }

    /// A send completed with `result`: the bytes the kernel took, or a negative errno.
    ///
    /// A chained send completes only when the chain broke: it failed or was cancelled. Its
    /// result then says how far it got (the kernel reports the bytes sent before the failure
    /// or the cancellation), or the error if nothing went. Either way the rest is resubmitted
    /// by the next [`send`](Self::send), and a socket that is broken fails that one.
    ///
    /// # Errors
    ///
    /// The send failed (the client reset the connection, say), or sent nothing. A send
    /// cancelled before it sent anything (`-ECANCELED`) is not an error: a cancellation was
    /// asked for, and whoever asked decides what happens next.
    pub fn on_sent(&mut self, result: i32) -> io::Result<()> {
        self.in_flight = false;
        self.chained = false;
        match result {
            // A partial send is normal (the socket's send buffer had room for that much);
            // `send` resubmits the rest.
            1.. => {
                self.sent += result as usize;
                Ok(())
            }
            // Zero bytes would never make progress.
            0 => Err(io::ErrorKind::WriteZero.into()),
            error if error == -libc::ECANCELED => Ok(()),
            error => Err(io::Error::from_raw_os_error(-error)),
        }
    }

    // ANCHOR: send
    /// Submits a send of the answers that wait on `socket`, whose completion carries
    /// `user_data`, unless a send is already in flight or nothing waits.
    ///
    /// # Safety
    ///
    /// The outbox must not be dropped, and `socket` must stay open, until the send's
    /// completion has arrived and been given to [`on_sent`](Self::on_sent) (while
    /// [`in_flight`](Self::in_flight) says so).
    pub unsafe fn send(&mut self, socket: Fd, user_data: u64, ring: &mut Ring) -> io::Result<()> {
        let Some(entry) = self.next_send(socket, user_data, 0) else {
            return Ok(());
        };
        // SAFETY: the entry points into the heap allocation of `sending`. While `in_flight`
        // is set nothing appends to, clears or swaps `sending` (new answers go to `queued`),
        // so the allocation neither moves nor changes, and our caller keeps it and the socket
        // alive until the completion.
        unsafe { ring.push(&entry)? };
        self.in_flight = true;
        Ok(())
    }
    // ANCHOR_END: send

    // ANCHOR: send_then
    /// Submits a send of the answers that wait, linked to `then` (an operation, or a chain of
    /// two): the kernel starts `then` once the send has gone out whole, and the send posts a
    /// completion only if it fails.
    /// Returns false, submitting nothing, when a send is in flight already or nothing waits.
    ///
    /// `MSG_WAITALL` makes the kernel send every byte before it calls the send done (a short
    /// send would otherwise count as a success and start `then`), and
    /// `IOSQE_CQE_SKIP_SUCCESS` keeps a successful send's completion off the queue. If the
    /// send fails (the client reset the connection) or is cancelled, its completion says so,
    /// and the kernel cancels `then` without posting one for it.
    ///
    /// # Safety
    ///
    /// As for [`send`](Self::send), until the completion of `then` or of the send has
    /// arrived; and `then` must be safe to submit (what it points to outlives it).
    pub unsafe fn send_then(
        &mut self,
        socket: Fd,
        user_data: u64,
        then: &[&squeue::Entry],
        ring: &mut Ring,
    ) -> io::Result<bool> {
        let Some(send) = self.next_send(socket, user_data, libc::MSG_WAITALL) else {
            return Ok(false);
        };
        let send = send.flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS);
        // The send, then `then`: a chain of two or three, on the stack.
        let mut chain = [&send; 3];
        chain[1..=then.len()].copy_from_slice(then);
        // SAFETY: as in `send` for the send; our caller answers for `then`.
        unsafe { ring.push_chain(&chain[..=then.len()])? };
        self.in_flight = true;
        self.chained = true;
        Ok(true)
    }
    // ANCHOR_END: send_then

    /// The send of what waits, unless a send is in flight or nothing waits.
    fn next_send(&mut self, socket: Fd, user_data: u64, flags: i32) -> Option<squeue::Entry> {
        if self.in_flight {
            return None;
        }
        if self.sent == self.sending.len() {
            self.sending.clear();
            self.sent = 0;
            std::mem::swap(&mut self.sending, &mut self.queued);
        }
        if self.sending.is_empty() {
            return None;
        }
        let rest = &self.sending[self.sent..];
        Some(
            opcode::Send::new(
                socket,
                rest.as_ptr(),
                u32::try_from(rest.len()).unwrap_or(u32::MAX),
            )
            .flags(flags)
            .build()
            .user_data(user_data),
        )
    }
}
