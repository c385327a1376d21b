//! What a completion is for: the 64 bits of `user_data` each operation carries.
//!
//! Every submission carries a `user_data` that the kernel hands back, untouched, in its
//! completion; that is how a completion finds its way home. A [`Token`] packs the kind of
//! operation into the low bits and the connection's slab key above them, so dispatching a
//! completion is a `match` and an index, like step03's tokens. One difference: a connection
//! can have a receive, a send and a cancellation in flight at once, so the token names the
//! operation as well as the connection.

/// Bits for the kind of operation, the low ones.
const KIND_BITS: u32 = 4;
/// Bits for the connection's key, above the kind.
const KEY_BITS: u32 = 20;

/// Connections one ring can hold: a connection's key must fit in the `KEY_BITS` a
/// [`Token`] has for it. Few systems let a process open that many files at all (Linux's
/// default `fs.nr_open` is exactly 2^20).
pub const MAX_CONNECTIONS: usize = 1 << KEY_BITS;

/// What a completion is for: which operation, for which connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The listener's accept.
    Accept,
    /// The timer that ends a pause in accepting (out of file descriptors).
    AcceptBackoff,
    /// A receive on connection `key`.
    Recv(usize),
    /// A send on connection `key`.
    Send(usize),
    /// A cancellation of connection `key`'s operations.
    Cancel(usize),
    /// The link timeout behind a receive of connection `key`. It posts no completion of its
    /// own (`IOSQE_CQE_SKIP_SUCCESS`): when it fires, the receive's says so.
    LinkTimeout(usize),
    /// From the signal thread: shut down gracefully.
    Shutdown,
    /// The end of the shutdown's grace period.
    ShutdownDeadline,
    /// The cancellation of the accept, as the shutdown begins.
    CancelAccept,
}

/// How many kinds there are: one more than the largest [`Token::kind`].
const KINDS: u64 = 9;

// Every kind fits in its bits, and a kind and a key fit in `user_data`.
const _: () = assert!(KINDS <= 1 << KIND_BITS);
const _: () = assert!(KIND_BITS + KEY_BITS <= u64::BITS);

impl Token {
    /// The number in the low [`KIND_BITS`] that says which operation this is.
    const fn kind(self) -> u64 {
        match self {
            Token::Accept => 0,
            Token::AcceptBackoff => 1,
            Token::Recv(_) => 2,
            Token::Send(_) => 3,
            Token::Cancel(_) => 4,
            Token::LinkTimeout(_) => 5,
            Token::Shutdown => 6,
            Token::ShutdownDeadline => 7,
            Token::CancelAccept => 8,
        }
    }
}

impl From<Token> for u64 {
    fn from(token: Token) -> u64 {
        let key = match token {
            Token::Recv(key) | Token::Send(key) | Token::Cancel(key) | Token::LinkTimeout(key) => {
                key
            }
            Token::Accept
            | Token::AcceptBackoff
            | Token::Shutdown
            | Token::ShutdownDeadline
            | Token::CancelAccept => 0,
        };
        debug_assert!(key < MAX_CONNECTIONS, "keys stay below MAX_CONNECTIONS");
        ((key as u64) << KIND_BITS) | token.kind()
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
            5 => Token::LinkTimeout(key),
            6 => Token::Shutdown,
            7 => Token::ShutdownDeadline,
            8 => Token::CancelAccept,
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
            Token::LinkTimeout(12345),
            Token::Shutdown,
            Token::ShutdownDeadline,
            Token::CancelAccept,
        ] {
            assert_eq!(Token::from(u64::from(token)), token);
        }
    }
}
