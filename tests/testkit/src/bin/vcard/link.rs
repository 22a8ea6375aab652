//! The card side of the vpcd socket: u16 big-endian length-prefixed frames both ways.
//!
//! vpcd writes the length and the body with two send() calls; with Nagle and delayed ACKs
//! every exchange would stall ~40 ms. So: TCP_NODELAY, one write per frame, and
//! TCP_QUICKACK before every read (Linux clears it again after a while).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub struct Link {
    stream: TcpStream,
}

impl Link {
    /// Connects, retrying every `interval` until `deadline` (None: forever).
    pub fn connect(
        host: &str,
        port: u16,
        deadline: Option<Instant>,
        interval: Duration,
    ) -> io::Result<Link> {
        loop {
            match TcpStream::connect((host, port)) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Link { stream });
                }
                Err(e) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(e);
                    }
                    sleep(interval);
                }
            }
        }
    }

    pub fn local_port(&self) -> Option<u16> {
        self.stream.local_addr().ok().map(|a| a.port())
    }

    /// The next frame; `None` when vpcd closed the connection between frames.
    pub fn read_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 2];
        self.quickack();
        match self.stream.read(&mut len[..1])? {
            0 => return Ok(None),
            _ => {
                self.quickack();
                self.stream.read_exact(&mut len[1..])?;
            }
        }
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if !body.is_empty() {
            self.quickack();
            self.stream.read_exact(&mut body)?;
        }
        Ok(Some(body))
    }

    /// Length and body in a single write.
    pub fn write_frame(&mut self, body: &[u8]) -> io::Result<()> {
        let len = u16::try_from(body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 65535 bytes"))?;
        let mut frame = Vec::with_capacity(body.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(body);
        self.stream.write_all(&frame)
    }

    /// Closes the connection: for vpcd the card is removed.
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Closes the connection with a TCP reset (SO_LINGER 0), like a card torn out mid-APDU
    /// (vpcd's pending recv fails; what the host sees depends on the vpcd version).
    pub fn abort(self) {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket fd and a `linger` option value of the size passed.
            unsafe {
                libc::setsockopt(
                    self.stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        drop(self.stream);
    }

    #[cfg(target_os = "linux")]
    fn quickack(&self) {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd and a c_int option value of the size passed.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn quickack(&self) {}
}
