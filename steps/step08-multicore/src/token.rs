//! What a completion is for: step07's tokens, and the ones that come from outside the ring.
//!
//! Every submission carries a `user_data` that the kernel hands back, untouched, in its
//! completion. A [`Token`] packs the kind of operation into the low bits, the connection's
//! slab key above them, and, for a fib, the answer's place in line above that: all in the low
//! 32 bits. The high 32 bits are left free: a message from the pool carries the high half of
//! fib's value there (the completion's `result` carries the low half; see
//! [`fib_value`](crate::pool::fib_value)).

/// Bits for the kind of operation, the low ones.
const KIND_BITS: u32 = 4;
/// Bits for the connection's key, above the kind.
const KEY_BITS: u32 = 20;
/// Bits for a fib's place in line, above the key.
pub const SEQ_BITS: u32 = 8;

/// Connections one ring can hold: a connection's key must fit in the `KEY_BITS` a
/// [`Token`] has for it. Few systems let a process open that many files at all (Linux's
/// default `fs.nr_open` is exactly 2^20).
pub const MAX_CONNECTIONS: usize = 1 << KEY_BITS;

/// What a completion is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The multishot accept on this ring's listener.
    Accept,
    /// The end of a pause in accepting (out of file descriptors).
    AcceptBackoff,
    /// The multishot receive of connection `key`.
    Recv(usize),
    /// A send on connection `key`.
    Send(usize),
    /// A cancellation asked for by connection `key`.
    Cancel(usize),
    /// From the pool: fib's value for request `seq` of connection `key`.
    Fib { key: usize, seq: u8 },
    /// From the signal thread: shut down gracefully.
    Shutdown,
    /// The end of the shutdown's grace period.
    ShutdownDeadline,
    /// The cancellation of the accept, as the shutdown begins.
    CancelAccept,
    /// The timer of connection `key` (its idle deadline, or the end of its drain).
    Timer(usize),
    /// The cancellation of that timer.
    CancelTimer(usize),
}

/// How many kinds there are: one more than the largest [`Token::kind`].
const KINDS: u64 = 11;

// Every kind fits in its bits; a kind, a key and a place in line fit in the low 32 bits; a
// place in line fits in a `u8`.
const _: () = assert!(KINDS <= 1 << KIND_BITS);
const _: () = assert!(KIND_BITS + KEY_BITS + SEQ_BITS <= 32);
const _: () = assert!(SEQ_BITS == u8::BITS);

impl Token {
    /// The number in the low [`KIND_BITS`] that says which operation this is.
    const fn kind(self) -> u64 {
        match self {
            Token::Accept => 0,
            Token::AcceptBackoff => 1,
            Token::Recv(_) => 2,
            Token::Send(_) => 3,
            Token::Cancel(_) => 4,
            Token::Fib { .. } => 5,
            Token::Shutdown => 6,
            Token::ShutdownDeadline => 7,
            Token::CancelAccept => 8,
            Token::Timer(_) => 9,
            Token::CancelTimer(_) => 10,
        }
    }
}

impl From<Token> for u64 {
    fn from(token: Token) -> u64 {
        let (key, seq) = match token {
            Token::Recv(key)
            | Token::Send(key)
            | Token::Cancel(key)
            | Token::Timer(key)
            | Token::CancelTimer(key) => (key, 0),
            Token::Fib { key, seq } => (key, seq),
            Token::Accept
            | Token::AcceptBackoff
            | Token::Shutdown
            | Token::ShutdownDeadline
            | Token::CancelAccept => (0, 0),
        };
        debug_assert!(key < MAX_CONNECTIONS, "keys stay below MAX_CONNECTIONS");
        (u64::from(seq) << (KIND_BITS + KEY_BITS)) | ((key as u64) << KIND_BITS) | token.kind()
    }
}

impl From<u64> for Token {
    fn from(user_data: u64) -> Token {
        let key = ((user_data >> KIND_BITS) as usize) & (MAX_CONNECTIONS - 1);
        match user_data & ((1 << KIND_BITS) - 1) {
            0 => Token::Accept,
            1 => Token::AcceptBackoff,
            2 => Token::Recv(key),
            3 => Token::Send(key),
            4 => Token::Cancel(key),
            5 => Token::Fib {
                key,
                seq: (user_data >> (KIND_BITS + KEY_BITS)) as u8,
            },
            6 => Token::Shutdown,
            7 => Token::ShutdownDeadline,
            8 => Token::CancelAccept,
            9 => Token::Timer(key),
            10 => Token::CancelTimer(key),
            // Every submission's user_data is made by `From<Token>` above.
            kind => unreachable!("user_data {user_data:#x} has no operation kind {kind}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_survives_user_data() {
        let last = MAX_CONNECTIONS - 1;
        for token in [
            Token::Accept,
            Token::AcceptBackoff,
            Token::Recv(0),
            Token::Recv(last),
            Token::Send(7),
            Token::Cancel(last),
            Token::Fib {
                key: last,
                seq: 255,
            },
            Token::Fib { key: 3, seq: 0 },
            Token::Shutdown,
            Token::ShutdownDeadline,
            Token::CancelAccept,
            Token::Timer(last),
            Token::CancelTimer(5),
        ] {
            assert_eq!(Token::from(u64::from(token)), token);
        }
    }

    #[test]
    fn a_token_leaves_the_high_half_of_user_data_free() {
        let last = MAX_CONNECTIONS - 1;
        let fib = Token::Fib {
            key: last,
            seq: 255,
        };
        assert_eq!(u64::from(fib) >> 32, 0);
    }
}
