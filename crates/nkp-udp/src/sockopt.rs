//! The few raw socket options that neither socket2 nor quinn-udp expose.
//!
//! This is the only module of the crate with `unsafe` code: two thin wrappers around
//! `setsockopt(2)` / `getsockopt(2)` for integer options, and the Linux options built on them.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// Sets an integer socket option.
pub(crate) fn set_int(
    sock: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the descriptor is borrowed from a live socket for the duration of the call; the
    // option value points to a `c_int` on our stack and `len` is exactly its size, so the
    // kernel reads only valid memory.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an integer socket option.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn get_int(
    sock: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the descriptor is borrowed from a live socket; `value` and `len` are valid,
    // writable locals and `len` tells the kernel the exact size of `value`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Lets the kernel fragment datagrams larger than the path MTU instead of failing with
/// `EMSGSIZE`: `IP_MTU_DISCOVER=IP_PMTUDISC_DONT`, and for IPv6 sockets also
/// `IPV6_MTU_DISCOVER=IPV6_PMTUDISC_DONT` and `IPV6_DONTFRAG=0` (quinn-udp turns on all three
/// "don't fragment" settings).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn allow_fragmentation(sock: &impl AsRawFd, v6: bool) -> io::Result<()> {
    if v6 {
        set_int(
            sock,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DONT,
        )?;
        set_int(sock, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0)?;
        // Only meaningful for v4-mapped traffic; an IPv6-only socket may refuse it.
        let _ = set_int(
            sock,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        );
        Ok(())
    } else {
        set_int(
            sock,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )
    }
}

/// Other systems fragment by default.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn allow_fragmentation(_sock: &impl AsRawFd, _v6: bool) -> io::Result<()> {
    Ok(())
}

/// Turns UDP generic receive offload off, so every datagram arrives in its own buffer.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn disable_gro(sock: &impl AsRawFd) -> io::Result<()> {
    set_int(sock, libc::SOL_UDP, libc::UDP_GRO, 0)
}

/// No GRO elsewhere.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn disable_gro(_sock: &impl AsRawFd) -> io::Result<()> {
    Ok(())
}

/// Raises a buffer past `net.core.rmem_max` / `wmem_max` (`SO_RCVBUFFORCE` /
/// `SO_SNDBUFFORCE`); needs `CAP_NET_ADMIN`, so failure is expected and harmless.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn force_buffer(sock: &impl AsRawFd, recv: bool, size: usize) -> io::Result<()> {
    let name = if recv {
        libc::SO_RCVBUFFORCE
    } else {
        libc::SO_SNDBUFFORCE
    };
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    set_int(sock, libc::SOL_SOCKET, name, size)
}

/// Not available elsewhere.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn force_buffer(_sock: &impl AsRawFd, _recv: bool, _size: usize) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}
