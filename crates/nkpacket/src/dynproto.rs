//! Type erasure of [`Protocol`]s, so that a registry can hold protocols of different types
//! while each connection task runs fully typed (monomorphised) code.

use std::any::type_name;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use bytes::Bytes;
use nkp_core::{Framing, Options, TransportKind};

use crate::conn::{ConnSetup, engine};
use crate::listener::ListenerInfo;
use crate::protocol::{Handled, Protocol, StopReason, TransportRule};

/// A registered protocol, type-erased.
pub(crate) trait DynProtocol: Send + Sync + 'static {
    fn type_name(&self) -> &'static str;
    fn transports(&self, scheme: &str) -> Option<Vec<TransportRule>>;
    fn default_port(&self, transport: TransportKind) -> Option<u16>;
    fn naptr(&self, scheme: &str, service: &str) -> Option<TransportKind>;
    fn uses_naptr(&self) -> bool;
    fn resolve_options(&self) -> Options;
    fn extra_options(&self) -> &'static [&'static str];
    fn framing(&self) -> Option<Framing>;
    /// Spawns the connection task.
    fn spawn(&self, setup: ConnSetup);
    fn listen_init(&self, listener: &ListenerInfo);
    fn listen_parse(&self, remote: SocketAddr, data: Bytes, listener: &ListenerInfo) -> Handled;
    fn listen_stop(&self, reason: &StopReason, listener: &ListenerInfo);
}

/// The erased form of a protocol `P`.
pub(crate) struct Erased<P>(pub(crate) Arc<P>);

/// Runs a protocol callback, turning a panic into `Err` with the callback's name.
pub(crate) fn guarded<T>(name: &'static str, f: impl FnOnce() -> T) -> Result<T, &'static str> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        tracing::error!(callback = name, "protocol callback panicked");
        name
    })
}

impl<P: Protocol> DynProtocol for Erased<P> {
    fn type_name(&self) -> &'static str {
        type_name::<P>()
    }
    fn transports(&self, scheme: &str) -> Option<Vec<TransportRule>> {
        self.0.transports(scheme)
    }
    fn default_port(&self, transport: TransportKind) -> Option<u16> {
        self.0.default_port(transport)
    }
    fn naptr(&self, scheme: &str, service: &str) -> Option<TransportKind> {
        self.0.naptr(scheme, service)
    }
    fn uses_naptr(&self) -> bool {
        self.0.uses_naptr()
    }
    fn resolve_options(&self) -> Options {
        self.0.resolve_options()
    }
    fn extra_options(&self) -> &'static [&'static str] {
        self.0.extra_options()
    }
    fn framing(&self) -> Option<Framing> {
        self.0.framing()
    }
    fn spawn(&self, setup: ConnSetup) {
        tokio::spawn(engine::run(self.0.clone(), Box::new(setup)));
    }
    fn listen_init(&self, listener: &ListenerInfo) {
        let _ = guarded("listen_init", || self.0.listen_init(listener));
    }
    fn listen_parse(&self, remote: SocketAddr, data: Bytes, listener: &ListenerInfo) -> Handled {
        guarded("listen_parse", || {
            self.0.listen_parse(remote, data, listener)
        })
        .unwrap_or(Handled::Continue)
    }
    fn listen_stop(&self, reason: &StopReason, listener: &ListenerInfo) {
        let _ = guarded("listen_stop", || self.0.listen_stop(reason, listener));
    }
}

/// The protocol used when a scheme has none registered: no callbacks, raw data only.
pub(crate) struct NoProtocol;

impl Protocol for NoProtocol {
    type Message = Bytes;
    type State = ();

    fn parse(
        &self,
        frame: nkp_core::Frame,
        conn: &crate::ConnInfo,
        _state: &mut (),
    ) -> crate::Parse<Bytes> {
        tracing::debug!(conn = %conn, len = frame.len(), "no protocol: received data dropped");
        crate::Parse::Continue
    }

    fn encode(
        &self,
        msg: Bytes,
        _conn: &crate::ConnInfo,
        _state: &mut (),
    ) -> Result<nkp_core::Frame, crate::EncodeError> {
        Ok(nkp_core::Frame::Binary(msg))
    }
}

/// A protocol reference with its registered name.
#[derive(Clone)]
pub(crate) struct ProtoRef {
    pub(crate) name: Arc<str>,
    pub(crate) proto: Arc<dyn DynProtocol>,
}

impl std::fmt::Debug for ProtoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name, self.proto.type_name())
    }
}

impl ProtoRef {
    pub(crate) fn new<P: Protocol>(name: &str, p: P) -> Self {
        ProtoRef {
            name: name.into(),
            proto: Arc::new(Erased(Arc::new(p))),
        }
    }

    pub(crate) fn none() -> Self {
        ProtoRef {
            name: "".into(),
            proto: Arc::new(Erased(Arc::new(NoProtocol))),
        }
    }
}
