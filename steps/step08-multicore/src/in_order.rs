//! Answers in request order, whatever order the pool finishes their fibs in.
//!
//! A client may pipeline `40\n1\n1\n`: the two small answers are ready at once, fib(40) a
//! few hundred milliseconds later, and the protocol says answers come in request order. step05
//! got that for free by awaiting inside the connection's task; a completion loop has no task
//! to suspend, so it keeps the line by hand: each fib on the pool takes a numbered place in
//! line, and the answers of the requests after it wait behind it until its value comes back.
//!
//! This is the whole of that bookkeeping, with no ring and no socket: the connection hands
//! it the buffer where ready answers go (its outbox's queue), and the tests below check it
//! alone.

use std::collections::VecDeque;

use shared::protocol::write_answer;

use crate::token::SEQ_BITS;

/// How many answers from the pool one connection may have in line (computing, or computed
/// and waiting for an earlier one) before it stops receiving: one client pipelining fib(45)
/// must not queue minutes of work ahead of everyone else's. Also what lets a place in line
/// fit in the 8 bits a [`Token`](crate::token::Token) has for it.
pub const OFFLOAD_LIMIT: usize = 32;

// Fewer places in line than numbers: a number is never reused while its fib is in line.
const _: () = assert!(OFFLOAD_LIMIT < 1 << SEQ_BITS);

// ANCHOR: waiting
/// An answer computing on the pool, and the answers of the requests after it, which must
/// wait for it: answers go out in request order.
#[derive(Debug)]
struct Waiting {
    /// fib's value, once the pool has posted it.
    value: Option<u64>,
    /// The answers of the following requests, up to the next fib on the pool.
    then: Vec<u8>,
}
// ANCHOR_END: waiting

/// The answers of one connection that wait for fibs on the pool, in request order.
#[derive(Debug, Default)]
pub struct InOrder {
    /// Oldest first; empty unless a fib is on the pool. The front one's value is always
    /// still to come (once it has come, it leaves).
    waiting: VecDeque<Waiting>,
    /// The place in line of `waiting[0]`, counting from 0 and wrapping at 256; the pool's
    /// results carry theirs.
    first_seq: u8,
    /// Bytes in all the `then`s of `waiting`.
    bytes: usize,
}

impl InOrder {
    /// Writes an answer after every answer before it: straight to `ready` (the answers that
    /// may go out now) when no fib is in line, otherwise behind the last fib in line.
    /// Returns what `write` returns.
    pub fn answer<R>(&mut self, ready: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        match self.waiting.back_mut() {
            Some(last) => {
                let before = last.then.len();
                let written = write(&mut last.then);
                self.bytes += last.then.len() - before;
                written
            }
            None => write(ready),
        }
    }

    /// The place in line the next fib sent to the pool takes.
    pub fn next_seq(&self) -> u8 {
        // Fewer than OFFLOAD_LIMIT are in line, so this never lands on a waiting one.
        self.first_seq.wrapping_add(self.waiting.len() as u8)
    }

    /// A fib has gone to the pool as number [`next_seq`](Self::next_seq): its answer takes
    /// that place in line, and answers from now on wait behind it.
    pub fn offloaded(&mut self) {
        debug_assert!(
            self.waiting.len() < OFFLOAD_LIMIT,
            "the caller keeps the limit"
        );
        self.waiting.push_back(Waiting {
            value: None,
            then: Vec::new(),
        });
    }

    // ANCHOR: on_fib
    /// The pool posted fib's value for the request numbered `seq`. The answers that were
    /// waiting for it, and for nothing else, go to `ready`, in order.
    pub fn on_fib(&mut self, seq: u8, value: u64, ready: &mut Vec<u8>) {
        // In line by construction: the number was given out by `next_seq`, and it stays in
        // line until its value has come (so indexing cannot panic).
        let index = usize::from(seq.wrapping_sub(self.first_seq));
        self.waiting[index].value = Some(value);
        // Answers leave from the front only: a later fib that finished first waits for the
        // ones before it.
        while let Some(value) = self.waiting.front().and_then(|first| first.value) {
            let then = self
                .waiting
                .pop_front()
                .map(|first| first.then)
                .unwrap_or_default();
            write_answer(ready, value);
            ready.extend_from_slice(&then);
            self.bytes -= then.len();
            self.first_seq = self.first_seq.wrapping_add(1);
        }
    }
    // ANCHOR_END: on_fib

    /// How many fibs are in line (on the pool, or back and waiting for an earlier one).
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no answer waits for the pool.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Bytes of answers waiting behind fibs: they count towards the connection's output
    /// limit like answers ready to go.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offloads a fib and returns its number.
    fn offload(in_order: &mut InOrder) -> u8 {
        let seq = in_order.next_seq();
        in_order.offloaded();
        seq
    }

    fn answer(in_order: &mut InOrder, ready: &mut Vec<u8>, text: &str) {
        in_order.answer(ready, |out| out.extend_from_slice(text.as_bytes()));
    }

    #[test]
    fn answers_leave_in_request_order_whatever_order_fibs_finish_in() {
        let (mut in_order, mut ready) = (InOrder::default(), Vec::new());
        // Requests: 1, fib A, 2, fib B, 3.
        answer(&mut in_order, &mut ready, "1\n");
        let a = offload(&mut in_order);
        answer(&mut in_order, &mut ready, "2\n");
        let b = offload(&mut in_order);
        answer(&mut in_order, &mut ready, "3\n");
        assert_eq!(
            ready, b"1\n",
            "only what comes before the first fib is ready"
        );

        in_order.on_fib(b, 200, &mut ready);
        assert_eq!(ready, b"1\n", "B finished first: it waits for A");
        in_order.on_fib(a, 100, &mut ready);
        assert_eq!(ready, b"1\n100\n2\n200\n3\n");
        assert!(in_order.is_empty());

        answer(&mut in_order, &mut ready, "4\n");
        assert_eq!(
            ready, b"1\n100\n2\n200\n3\n4\n",
            "nothing in line: straight out"
        );
    }

    #[test]
    fn places_in_line_wrap_at_256() {
        let (mut in_order, mut ready) = (InOrder::default(), Vec::new());
        // 254 fibs one after the other take the numbers 0 to 253.
        for i in 0..254u64 {
            let seq = offload(&mut in_order);
            assert_eq!(u64::from(seq), i);
            in_order.on_fib(seq, i, &mut ready);
        }
        ready.clear();
        // Then a line across the wrap, finishing last first: 254, 255, 0.
        let numbers: Vec<u8> = (0..3).map(|_| offload(&mut in_order)).collect();
        assert_eq!(numbers, [254, 255, 0]);
        in_order.on_fib(0, 3, &mut ready);
        in_order.on_fib(255, 2, &mut ready);
        assert!(ready.is_empty(), "everything waits for number 254");
        in_order.on_fib(254, 1, &mut ready);
        assert_eq!(ready, b"1\n2\n3\n");
        assert!(in_order.is_empty());
        assert_eq!(
            offload(&mut in_order),
            1,
            "numbering goes on after the wrap"
        );
    }

    #[test]
    fn bytes_count_what_waits_behind_a_fib() {
        let (mut in_order, mut ready) = (InOrder::default(), Vec::new());
        answer(&mut in_order, &mut ready, "ready\n");
        assert_eq!(in_order.bytes(), 0, "answers that can go out do not wait");
        let first = offload(&mut in_order);
        answer(&mut in_order, &mut ready, "12\n");
        let second = offload(&mut in_order);
        answer(&mut in_order, &mut ready, "345\n");
        assert_eq!(in_order.bytes(), 3 + 4);
        assert_eq!(in_order.len(), 2);
        in_order.on_fib(first, 0, &mut ready);
        assert_eq!(
            in_order.bytes(),
            4,
            "the answers behind the first fib have left"
        );
        in_order.on_fib(second, 0, &mut ready);
        assert_eq!(in_order.bytes(), 0);
        assert_eq!(ready, b"ready\n0\n12\n0\n345\n");
    }
}
