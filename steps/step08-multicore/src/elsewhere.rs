//! Not Linux: no io_uring. The step still builds, so that the workspace builds everywhere,
//! and says what to run instead.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;

use shared::cli::Config;

use crate::Options;

/// A server that cannot exist here: [`bind`](shared::Server::bind) always fails.
#[derive(Debug)]
pub struct Server {
    never: Infallible,
}

impl shared::Server for Server {
    type Options = Options;
    const ABOUT: &'static str = "Step 8: a multicore fib server on an io_uring per core \
                                 (Linux only).";
    const TRACE_TARGETS: &'static [&'static str] = &["step08", "step07"];

    fn bind(_: &Config, _: &Options) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "step08 needs Linux (io_uring); run step06 instead",
        ))
    }

    fn local_addr(&self) -> SocketAddr {
        match self.never {}
    }

    fn run(self) -> io::Result<()> {
        match self.never {}
    }
}
