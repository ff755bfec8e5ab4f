//! `lattice-xds redirect`: the pod's traffic capture. VPC Lattice services answer on link-local
//! addresses (IPv4 `169.254.171.0/24`, IPv6 `fd00:ec2:80::/64`); the rules send the pod's TCP
//! connections to those ranges to the sidecar's egress listener instead, except the sidecar's
//! own (matched by its uid and gid), which must reach Lattice itself.
//!
//! The rules are rendered in `iptables-restore` format, one table per address family, and
//! applied with `--noflush` so that rules installed by others (the CNI) stay.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::str::FromStr;

use anyhow::Context;

/// The chain every rule lives in, so that the rules are easy to find and to remove.
pub const CHAIN: &str = "LATTICE_XDS_REDIRECT";
/// VPC Lattice's IPv4 link-local range.
pub const LATTICE_IPV4: &str = "169.254.171.0/24";
/// VPC Lattice's IPv6 range.
pub const LATTICE_IPV6: &str = "fd00:ec2:80::/64";

/// What to capture and where to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectConfig {
    pub egress_port: u16,
    /// The sidecar Envoy's user and group: its own connections are never captured.
    pub proxy_uid: u32,
    pub proxy_gid: u32,
    /// The ranges to capture, of either family.
    pub ranges: Vec<Cidr>,
}

/// An address range written `address/prefix`, checked before it reaches iptables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    fn family(&self) -> Family {
        if self.address.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{text:?} is not an address range such as 169.254.171.0/24");
        let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(invalid());
        }
        Ok(Self { address, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// The address family a table of rules is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    fn restore_command(self) -> &'static str {
        match self {
            Self::Ipv4 => "iptables-restore",
            Self::Ipv6 => "ip6tables-restore",
        }
    }
}

/// The `nat` table for one family, in `iptables-restore` format.
pub fn render(config: &RedirectConfig, family: Family) -> String {
    let mut rules = format!("*nat\n:{CHAIN} - [0:0]\n");
    for range in config
        .ranges
        .iter()
        .filter(|range| range.family() == family)
    {
        rules.push_str(&format!("-A OUTPUT -p tcp -d {range} -j {CHAIN}\n"));
    }
    rules.push_str(&format!(
        "-A {CHAIN} -m owner --uid-owner {} -j RETURN\n",
        config.proxy_uid
    ));
    rules.push_str(&format!(
        "-A {CHAIN} -m owner --gid-owner {} -j RETURN\n",
        config.proxy_gid
    ));
    rules.push_str(&format!(
        "-A {CHAIN} -p tcp -j REDIRECT --to-ports {}\n",
        config.egress_port
    ));
    rules.push_str("COMMIT\n");
    rules
}

/// Installs both tables. IPv6 is skipped, with a warning, only where the kernel has no IPv6.
pub fn apply(config: &RedirectConfig) -> anyhow::Result<()> {
    restore(Family::Ipv4, &render(config, Family::Ipv4))?;
    if std::path::Path::new("/proc/net/if_inet6").exists() {
        restore(Family::Ipv6, &render(config, Family::Ipv6))?;
    } else {
        tracing::warn!("this pod has no IPv6: only the IPv4 Lattice range is redirected");
    }
    tracing::info!(
        egress_port = config.egress_port,
        proxy_uid = config.proxy_uid,
        "Lattice traffic redirected to the sidecar"
    );
    Ok(())
}

fn restore(family: Family, rules: &str) -> anyhow::Result<()> {
    let command = family.restore_command();
    let mut child = Command::new(command)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {command}: is iptables installed in this image?"))?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(rules.as_bytes())?;
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "{command} refused the rules ({}): {}\nthe rules were:\n{rules}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_capture_lattice_ranges_except_the_proxy() {
        let config = RedirectConfig {
            egress_port: 8080,
            proxy_uid: 101,
            proxy_gid: 101,
            ranges: vec![LATTICE_IPV4.parse().unwrap(), LATTICE_IPV6.parse().unwrap()],
        };
        assert_eq!(
            render(&config, Family::Ipv4),
            "*nat\n:LATTICE_XDS_REDIRECT - [0:0]\n\
             -A OUTPUT -p tcp -d 169.254.171.0/24 -j LATTICE_XDS_REDIRECT\n\
             -A LATTICE_XDS_REDIRECT -m owner --uid-owner 101 -j RETURN\n\
             -A LATTICE_XDS_REDIRECT -m owner --gid-owner 101 -j RETURN\n\
             -A LATTICE_XDS_REDIRECT -p tcp -j REDIRECT --to-ports 8080\n\
             COMMIT\n"
        );
        let ipv6 = render(&config, Family::Ipv6);
        assert!(
            ipv6.contains("-d fd00:ec2:80::/64 -j LATTICE_XDS_REDIRECT"),
            "{ipv6}"
        );
        assert!(!ipv6.contains("169.254"), "{ipv6}");
    }

    #[test]
    fn ranges_are_checked() {
        assert!("169.254.171.0/33".parse::<Cidr>().is_err());
        assert!("fd00:ec2:80::".parse::<Cidr>().is_err());
        assert!("lattice/24".parse::<Cidr>().is_err());
        assert_eq!(
            "fd00:ec2:80::/64".parse::<Cidr>().unwrap().to_string(),
            "fd00:ec2:80::/64"
        );
    }
}
