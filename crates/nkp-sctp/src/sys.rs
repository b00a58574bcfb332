//! Kernel SCTP through libc: the few socket options, `sendmsg`/`recvmsg` with SCTP control
//! messages, and the association setup call the crate needs (RFC 6458 socket API, Linux
//! constants from `<linux/sctp.h>`).
//!
//! This is the only module with `unsafe` code: each block is a system call on a socket the
//! caller owns, with buffers that live for the duration of the call.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// `IPPROTO_SCTP` (also the `SOL_SCTP` option level).
pub(crate) const IPPROTO_SCTP: libc::c_int = 132;

const SCTP_INITMSG: libc::c_int = 2;
const SCTP_NODELAY: libc::c_int = 3;
const SCTP_RECVRCVINFO: libc::c_int = 32;
const SCTP_SOCKOPT_CONNECTX3: libc::c_int = 111;
const SCTP_EVENT: libc::c_int = 127;

/// Control message types (`sctp_cmsg_t`).
const SCTP_SNDINFO: libc::c_int = 2;
const SCTP_RCVINFO: libc::c_int = 3;

/// `msg_flags` bit of a notification (not user data).
const MSG_NOTIFICATION: libc::c_int = 0x8000;
/// Send flag: graceful shutdown of the association (`SCTP_EOF` = `MSG_FIN`).
pub(crate) const SCTP_EOF: u16 = 0x200;
/// Send flag: abort the association.
pub(crate) const SCTP_ABORT: u16 = 0x4;

/// Notification types (`enum sctp_sn_type`).
const SCTP_ASSOC_CHANGE: u16 = 0x8001;
const SCTP_SHUTDOWN_EVENT: u16 = 0x8005;

/// An association identifier (`sctp_assoc_t`).
pub(crate) type AssocId = i32;

#[repr(C)]
struct SctpInitMsg {
    num_ostreams: u16,
    max_instreams: u16,
    max_attempts: u16,
    max_init_timeo: u16,
}

#[repr(C)]
struct SctpEvent {
    assoc_id: AssocId,
    kind: u16,
    on: u8,
}

#[repr(C)]
struct SctpSndInfo {
    sid: u16,
    flags: u16,
    ppid: u32,
    context: u32,
    assoc_id: AssocId,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct SctpRcvInfo {
    sid: u16,
    ssn: u16,
    flags: u16,
    ppid: u32,
    tsn: u32,
    cumtsn: u32,
    context: u32,
    assoc_id: AssocId,
}

/// `struct sctp_getaddrs_old`, the argument of `SCTP_SOCKOPT_CONNECTX3`.
#[repr(C)]
struct GetAddrsOld {
    assoc_id: AssocId,
    addr_num: libc::c_int,
    addrs: *mut libc::sockaddr,
}

/// A new non-blocking one-to-many (`SOCK_SEQPACKET`) SCTP socket of `domain`.
pub(crate) fn socket(domain: Domain) -> io::Result<Socket> {
    Socket::new(
        domain,
        Type::SEQPACKET.nonblocking().cloexec(),
        Some(Protocol::from(IPPROTO_SCTP)),
    )
}

/// Registers `s` with tokio's reactor (in a runtime context).
pub(crate) fn register(s: Socket) -> io::Result<tokio::io::unix::AsyncFd<Socket>> {
    // SAFETY: a `Socket` owns its file descriptor: it is open and stays the same one until
    // the `Socket` (here moved into the `AsyncFd`) is dropped.
    unsafe { tokio::io::unix::AsyncFd::register(s) }.map_err(io::Error::from)
}

fn setsockopt<T>(fd: BorrowedFd<'_>, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid, initialised `T` for `size_of::<T>()` bytes during the
    // call, and `fd` is an open socket borrowed for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            IPPROTO_SCTP,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `SCTP_INITMSG`: streams asked for by new associations.
pub(crate) fn set_init_msg(
    fd: BorrowedFd<'_>,
    out_streams: u16,
    in_streams: u16,
) -> io::Result<()> {
    setsockopt(
        fd,
        SCTP_INITMSG,
        &SctpInitMsg {
            num_ostreams: out_streams,
            max_instreams: in_streams,
            max_attempts: 0,
            max_init_timeo: 0,
        },
    )
}

/// Subscribes to association change and shutdown notifications, asks for `SCTP_RCVINFO`
/// with every message (its association id), and turns Nagle-like bundling delays off.
pub(crate) fn configure(fd: BorrowedFd<'_>) -> io::Result<()> {
    for kind in [SCTP_ASSOC_CHANGE, SCTP_SHUTDOWN_EVENT] {
        setsockopt(
            fd,
            SCTP_EVENT,
            &SctpEvent {
                assoc_id: 0, // SCTP_FUTURE_ASSOC
                kind,
                on: 1,
            },
        )?;
    }
    let on: libc::c_int = 1;
    setsockopt(fd, SCTP_RECVRCVINFO, &on)?;
    setsockopt(fd, SCTP_NODELAY, &on)
}

/// Starts an association to `remote` (non-blocking): returns its id at once; the
/// `SCTP_COMM_UP` (or `SCTP_CANT_STR_ASSOC`) notification tells how it went.
pub(crate) fn connectx(fd: BorrowedFd<'_>, remote: SocketAddr) -> io::Result<AssocId> {
    let addr = SockAddr::from(remote);
    let mut param = GetAddrsOld {
        assoc_id: 0,
        // Despite its name, the kernel reads this as the size in bytes of `addrs`.
        addr_num: addr.len() as libc::c_int,
        addrs: addr.as_ptr() as *mut libc::sockaddr,
    };
    let mut len = size_of::<GetAddrsOld>() as libc::socklen_t;
    // SAFETY: `param` is a valid `sctp_getaddrs_old` whose `addrs` points to one socket
    // address (`addr`, alive until the end of this function) of `addr_num` bytes; `len` is
    // the size of `param`. The kernel only reads the address and
    // writes the association id into `param`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            IPPROTO_SCTP,
            SCTP_SOCKOPT_CONNECTX3,
            (&mut param as *mut GetAddrsOld).cast(),
            &mut len,
        )
    };
    let err = io::Error::last_os_error();
    if rc == 0 || err.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok(param.assoc_id)
    } else {
        Err(err)
    }
}

/// Sends one message on stream 0 of association `assoc` (or, with an empty `data` and
/// [`SCTP_EOF`] / [`SCTP_ABORT`] in `flags`, shuts it down / aborts it).
pub(crate) fn send(
    fd: BorrowedFd<'_>,
    assoc: AssocId,
    data: &[u8],
    flags: u16,
) -> io::Result<usize> {
    let info = SctpSndInfo {
        sid: 0,
        flags,
        ppid: 0,
        context: 0,
        assoc_id: assoc,
    };
    // u64 storage keeps the control buffer aligned for `cmsghdr`.
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(size_of::<SctpSndInfo>() as u32) } as usize;
    debug_assert!(space <= size_of::<[u64; 8]>());
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero `msghdr` is valid (null name, no iovecs, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points to `control`, which has room for one control message of
    // `space` bytes, so CMSG_FIRSTHDR is non-null and its data area holds an
    // `SctpSndInfo`; the write is unaligned-safe. `iov` points to `data`, which the kernel
    // only reads. All buffers outlive the call.
    let rc = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = IPPROTO_SCTP;
        (*cmsg).cmsg_type = SCTP_SNDINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<SctpSndInfo>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<SctpSndInfo>(), info);
        libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// What one `recvmsg` returned.
#[derive(Debug)]
pub(crate) struct Received {
    /// Bytes written to the buffer.
    pub(crate) len: usize,
    /// The message (or notification) is complete (`MSG_EOR`).
    pub(crate) eor: bool,
    /// This is a notification, not user data.
    pub(crate) notification: bool,
    /// The association of user data (from `SCTP_RCVINFO`).
    pub(crate) assoc: Option<AssocId>,
    /// The peer's address (of the data, or the association's primary for notifications).
    pub(crate) from: Option<SocketAddr>,
}

/// Receives (part of) one message or notification.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the closure fills the zeroed address storage socket2 hands it (of the length
    // it gives) through `recvmsg`, which also writes at most `buf.len()` bytes into `buf`
    // and at most `msg_controllen` bytes into `control`; all outlive the call. The control
    // messages are then read within the length the kernel reported, with unaligned reads.
    let res = unsafe {
        SockAddr::try_init(|storage, len| {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 16]>() as _;
            let n = libc::recvmsg(fd.as_raw_fd(), &mut msg, 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *len = msg.msg_namelen;
            let mut assoc = None;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == IPPROTO_SCTP
                    && (*cmsg).cmsg_type == SCTP_RCVINFO
                    && (*cmsg).cmsg_len as usize
                        >= libc::CMSG_LEN(size_of::<SctpRcvInfo>() as u32) as usize
                {
                    let info: SctpRcvInfo =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<SctpRcvInfo>());
                    assoc = Some(info.assoc_id);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            Ok(Received {
                len: n as usize,
                eor: msg.msg_flags & libc::MSG_EOR != 0,
                notification: msg.msg_flags & MSG_NOTIFICATION != 0,
                assoc,
                from: None,
            })
        })
    };
    let (mut r, addr) = res?;
    r.from = addr.as_socket();
    Ok(r)
}

/// A decoded notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notification {
    /// `SCTP_ASSOC_CHANGE`.
    AssocChange {
        /// `sac_state`.
        state: AssocState,
        /// `sac_error`.
        error: u16,
        /// Negotiated outbound streams.
        outbound: u16,
        /// Negotiated inbound streams.
        inbound: u16,
        /// The association.
        assoc: AssocId,
    },
    /// `SCTP_SHUTDOWN_EVENT`: the peer shut down (no more data will come).
    Shutdown {
        /// The association.
        assoc: AssocId,
    },
    /// Anything else (not subscribed, or not used).
    Other(u16),
}

/// `enum sctp_sac_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AssocState {
    CommUp,
    CommLost,
    Restart,
    ShutdownComplete,
    CantStart,
    Unknown(u16),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes a complete notification; `None` when it is too short.
pub(crate) fn parse_notification(b: &[u8]) -> Option<Notification> {
    let kind = u16_at(b, 0)?;
    Some(match kind {
        SCTP_ASSOC_CHANGE => {
            // type u16, flags u16, length u32, state u16, error u16, out u16, in u16, id i32
            let state = match u16_at(b, 8)? {
                0 => AssocState::CommUp,
                1 => AssocState::CommLost,
                2 => AssocState::Restart,
                3 => AssocState::ShutdownComplete,
                4 => AssocState::CantStart,
                n => AssocState::Unknown(n),
            };
            Notification::AssocChange {
                state,
                error: u16_at(b, 10)?,
                outbound: u16_at(b, 12)?,
                inbound: u16_at(b, 14)?,
                assoc: i32_at(b, 16)?,
            }
        }
        // type u16, flags u16, length u32, id i32
        SCTP_SHUTDOWN_EVENT => Notification::Shutdown {
            assoc: i32_at(b, 8)?,
        },
        other => Notification::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_layouts_match_the_kernel() {
        assert_eq!(size_of::<SctpInitMsg>(), 8);
        assert_eq!(size_of::<SctpEvent>(), 8);
        assert_eq!(size_of::<SctpSndInfo>(), 16);
        assert_eq!(size_of::<SctpRcvInfo>(), 28);
        assert_eq!(size_of::<GetAddrsOld>(), 16);
    }

    #[test]
    fn parses_an_assoc_change() {
        let mut b = Vec::new();
        b.extend_from_slice(&SCTP_ASSOC_CHANGE.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&20u32.to_ne_bytes());
        b.extend_from_slice(&3u16.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&5u16.to_ne_bytes());
        b.extend_from_slice(&7u16.to_ne_bytes());
        b.extend_from_slice(&42i32.to_ne_bytes());
        assert_eq!(
            parse_notification(&b),
            Some(Notification::AssocChange {
                state: AssocState::ShutdownComplete,
                error: 0,
                outbound: 5,
                inbound: 7,
                assoc: 42
            })
        );
        assert_eq!(parse_notification(&b[..10]), None);
    }
}
