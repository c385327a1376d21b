//! Async TCP: std's sockets in non-blocking mode, registered with the reactor.
//!
//! Every operation has the same shape ([`Registration::io`]): try the non-blocking call; if
//! it would block, wait for the reactor to report the socket ready, and try again. To the
//! caller it looks like step01's blocking call with `.await` after it, but where step01's
//! thread slept in the kernel, here the task returns `Pending` and the thread runs other
//! tasks.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use crate::reactor::{Direction, Reactor};
use crate::registration::Registration;

/// A listening socket whose [`accept`](Self::accept) waits as a task, not as a thread.
#[derive(Debug)]
pub struct TcpListener {
    inner: Registration<std::net::TcpListener>,
}

impl TcpListener {
    /// Takes over a bound std listener: makes it non-blocking and registers it with this
    /// thread's reactor.
    ///
    /// # Errors
    ///
    /// When the listener cannot be made non-blocking or registered.
    ///
    /// # Panics
    ///
    /// Outside [`block_on`](crate::executor::block_on).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        let inner = Reactor::current().register(listener)?;
        inner.name("listener");
        Ok(TcpListener { inner })
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    // ANCHOR: accept
    /// Waits for the next connection and returns it, registered with the reactor.
    ///
    /// # Errors
    ///
    /// As `accept(2)`: out of file descriptors, a connection aborted in the backlog, ... An
    /// accepted connection that cannot be registered is closed and its error returned.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self
            .inner
            .io(Direction::Read, |listener| listener.accept())
            .await?;
        let stream = TcpStream::from_std(stream)?;
        tracing::trace!("accept → conn {}", stream.key());
        Ok((stream, peer))
    }
    // ANCHOR_END: accept
}

/// A connected socket whose reads and writes wait as a task, not as a thread.
#[derive(Debug)]
pub struct TcpStream {
    inner: Registration<std::net::TcpStream>,
}

impl TcpStream {
    /// Takes over a connected std stream: makes it non-blocking and registers it with this
    /// thread's reactor.
    ///
    /// # Errors
    ///
    /// When the stream cannot be made non-blocking or registered.
    ///
    /// # Panics
    ///
    /// Outside [`block_on`](crate::executor::block_on).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        Ok(TcpStream {
            inner: Reactor::current().register(stream)?,
        })
    }

    /// Reads what has arrived into `buf`, waiting until something has; `Ok(0)` is the end of
    /// the stream.
    ///
    /// # Errors
    ///
    /// As `read(2)`: the peer reset the connection, ...
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // `&std::net::TcpStream` implements `Read`: reading a socket needs no `&mut`.
        let key = self.key();
        self.inner
            .io(Direction::Read, |mut stream| {
                let read = stream.read(buf);
                trace_io("read", key, &read);
                read
            })
            .await
    }

    /// The socket's key with the reactor: how `--trace` names it (`conn 7`).
    pub fn key(&self) -> usize {
        self.inner.key()
    }

    /// Reads what has arrived into `buf` without waiting: `Ok(None)` when nothing has.
    ///
    /// # Errors
    ///
    /// As `read(2)`.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.inner.get_ref().read(buf) {
            Ok(received) => Ok(Some(received)),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Writes some of `buf`, waiting until the socket has room for at least a byte.
    ///
    /// # Errors
    ///
    /// As `write(2)`: the peer reset the connection or closed it (`BrokenPipe`), ...
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let key = self.key();
        self.inner
            .io(Direction::Write, |mut stream| {
                let written = stream.write(buf);
                trace_io("write", key, &written);
                written
            })
            .await
    }

    /// Writes all of `buf`, waiting for room as often as needed: a slow reader on the other
    /// end holds up this task only.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write); `WriteZero` if the socket takes no more bytes.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                written => buf = &buf[written..],
            }
        }
        Ok(())
    }

    /// Shuts down the reading, writing or both halves of the connection. It never waits.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpStream::shutdown`].
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get_ref().shutdown(how)
    }
}

/// `--trace`: what a read or a write on `conn {key}` did.
fn trace_io(what: &str, key: usize, result: &io::Result<usize>) {
    // Off (no `--trace`), one check of a cached flag, before comparing `what`.
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    match result {
        Ok(0) if what == "read" => tracing::trace!("conn {key}: read: end of input"),
        Ok(bytes) => tracing::trace!("conn {key}: {what} {bytes} bytes"),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
            tracing::trace!("conn {key}: {what}: would block")
        }
        Err(error) => tracing::trace!("conn {key}: {what}: {error}"),
    }
}
