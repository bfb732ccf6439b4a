//! The policy routes that deliver steered routed packets locally: the TC steering program marks
//! every packet of a routed flow to a protected target, and `fwmark MARK lookup MARK` with a
//! `local default dev lo` route in table MARK hands them to the local stack (to the socket the
//! program assigned) instead of forwarding them. The same for IPv6. Installed by `tollgate up`
//! (or by `tollgate serve` when it attaches by itself), removed by `tollgate down`.
//!
//! Written with `ip` (iproute2), which every host that routes has; `ip` also tells a virtual
//! interface from a physical one (the XDP mode depends on it).

use std::process::Command;

/// A failed `ip` command, with its output.
#[derive(Debug, thiserror::Error)]
#[error("`ip {args}` failed: {detail}")]
pub struct RouteError {
    /// The arguments.
    pub args: String,
    /// What `ip` printed, or why it could not run.
    pub detail: String,
}

/// The policy routing of one mark.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRoutes {
    mark: u32,
}

impl PolicyRoutes {
    /// The routes for `mark` (also the table number and the rule priority).
    #[must_use]
    pub fn new(mark: u32) -> Self {
        Self { mark }
    }

    /// Installs (or re-installs) the rules and routes for both families.
    pub fn install(&self) -> Result<(), RouteError> {
        self.remove();
        let mark = self.mark.to_string();
        for (family, default) in [("-4", "0.0.0.0/0"), ("-6", "::/0")] {
            ip(&[
                family, "rule", "add", "fwmark", &mark, "lookup", &mark, "priority", &mark,
            ])?;
            ip(&[
                family, "route", "replace", "local", default, "dev", "lo", "table", &mark,
            ])?;
        }
        Ok(())
    }

    /// True when the IPv4 rule is in place.
    #[must_use]
    pub fn installed(&self) -> bool {
        Command::new("ip")
            .args(["-4", "rule", "show", "priority", &self.mark.to_string()])
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
    }

    /// Removes the rules and routes; what is not there is skipped.
    pub fn remove(&self) {
        let mark = self.mark.to_string();
        for family in ["-4", "-6"] {
            let _ = ip(&[family, "rule", "del", "priority", &mark]);
            let _ = ip(&[family, "route", "flush", "table", &mark]);
        }
    }
}

fn ip(args: &[&str]) -> Result<(), RouteError> {
    let error = |detail: String| RouteError {
        args: args.join(" "),
        detail,
    };
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| error(format!("cannot run ip (install iproute2): {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(error(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

/// True when `interface` (in this network namespace) is a virtual link (veth, bridge, vxlan,
/// ...): `ip -d -j link` names a link kind for those and none for a physical NIC.
#[must_use]
pub fn is_virtual(interface: &str) -> bool {
    let Ok(output) = Command::new("ip")
        .args(["-d", "-j", "link", "show", "dev", interface])
        .output()
    else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&output.stdout)
        .ok()
        .and_then(|links| links.get(0)?.get("linkinfo")?.get("info_kind").cloned())
        .is_some()
}
