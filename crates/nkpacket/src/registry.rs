//! The protocol registry: scheme → protocol, globally and per domain.

use std::collections::HashMap;

use parking_lot::RwLock;

use crate::dynproto::ProtoRef;

/// Registered protocols. A later registration under the same key replaces the earlier one.
#[derive(Default)]
pub(crate) struct ProtocolRegistry {
    global: RwLock<HashMap<String, ProtoRef>>,
    by_domain: RwLock<HashMap<(String, String), ProtoRef>>,
}

impl ProtocolRegistry {
    pub(crate) fn register(&self, scheme: &str, proto: ProtoRef) {
        self.global
            .write()
            .insert(scheme.to_ascii_lowercase(), proto);
    }

    pub(crate) fn register_in(&self, domain: &str, scheme: &str, proto: ProtoRef) {
        self.by_domain
            .write()
            .insert((domain.to_string(), scheme.to_ascii_lowercase()), proto);
    }

    /// The protocol for `scheme`: the domain's registration first, then the global one.
    pub(crate) fn get(&self, domain: Option<&str>, scheme: &str) -> Option<ProtoRef> {
        let scheme = scheme.to_ascii_lowercase();
        if let Some(d) = domain
            && let Some(p) = self.by_domain.read().get(&(d.to_string(), scheme.clone()))
        {
            return Some(p.clone());
        }
        self.global.read().get(&scheme).cloned()
    }
}
