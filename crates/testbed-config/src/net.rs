//! Addresses and sizes as the file writes them.

use std::fmt;
use std::net::Ipv4Addr;

/// The bridge's IPv4 address with its prefix, e.g. `10.123.45.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// The bridge's own (gateway) address.
    pub gateway: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let (addr, prefix) = s.split_once('/').ok_or("has no /PREFIX")?;
        let gateway: Ipv4Addr = addr.parse().map_err(|_| format!("has {addr:?}, which is not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("has prefix {prefix:?}, which is not a number"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("has prefix /{prefix}; use /8 to /30"));
        }
        let subnet = Subnet { gateway, prefix };
        if gateway == subnet.network() || gateway == subnet.broadcast() {
            return Err("is the network or broadcast address, not a host address".into());
        }
        Ok(subnet)
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix as u32)
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.gateway) & self.mask())
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.gateway) | !self.mask())
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.gateway) & self.mask()
    }

    /// Whether `a` can be given to a container on this bridge.
    pub fn check_host(&self, a: Ipv4Addr) -> Result<(), String> {
        if !self.contains(a) {
            return Err(format!("is outside the bridge subnet {}/{}", self.network(), self.prefix));
        }
        if a == self.network() || a == self.broadcast() {
            return Err("is the subnet's network or broadcast address".into());
        }
        if a == self.gateway {
            return Err("is the bridge's own address".into());
        }
        Ok(())
    }

    /// Host addresses usable for members, in order, starting at the 10th address of the subnet (the low
    /// ones are left for the bridge and whatever the user places there by hand).
    ///
    /// The arithmetic cannot wrap: a subnet at the top of the address space has no candidate past its
    /// broadcast address, and a subnet too small for the offset has none at all.
    pub fn member_candidates(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let (first, last) = self.candidate_range();
        (first..=last).map(Ipv4Addr::from).filter(move |a| *a != self.gateway)
    }

    /// How many addresses [`Subnet::member_candidates`] yields.
    pub fn member_room(&self) -> usize {
        let (first, last) = self.candidate_range();
        if first > last {
            return 0;
        }
        let gateway = u32::from(self.gateway);
        (last - first + 1) as usize - usize::from((first..=last).contains(&gateway))
    }

    /// Whether `a` is one of [`Subnet::member_candidates`], without walking them.
    pub fn is_member_candidate(&self, a: Ipv4Addr) -> bool {
        let (first, last) = self.candidate_range();
        (first..=last).contains(&u32::from(a)) && a != self.gateway
    }

    /// The first and last candidate member address as numbers; first > last when there is none.
    fn candidate_range(&self) -> (u32, u32) {
        let first = u32::from(self.network()).saturating_add(10);
        let last = u32::from(self.broadcast()).saturating_sub(1);
        (first, last)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// A proxy target `tcp:ADDRESS:PORT` (or `udp:`), as LXD's proxy `connect` key.
pub fn parse_connect(s: &str) -> Result<(String, String, u16), String> {
    let (proto, rest) = s.split_once(':').ok_or("has no protocol (tcp: or udp:)")?;
    if proto != "tcp" && proto != "udp" {
        if proto.parse::<std::net::IpAddr>().is_ok() || proto.contains('.') {
            return Err(format!("has no protocol; write \"tcp:{s}\""));
        }
        return Err(format!("has protocol {proto:?}; use tcp or udp"));
    }
    let (addr, port) = rest.rsplit_once(':').ok_or("has no :PORT")?;
    let addr_ok = addr.parse::<std::net::IpAddr>().is_ok()
        || addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    if !addr_ok {
        return Err(format!("has address {addr:?}, which is not an IP address"));
    }
    let port: u16 = port.parse().map_err(|_| format!("has port {port:?}, which is not a port number"))?;
    if port == 0 {
        return Err("has port 0".into());
    }
    Ok((proto.to_owned(), addr.to_owned(), port))
}

/// LXD's `limits.memory`: a size with a unit (`512MiB`, `4GB`) or a percentage (`50%`).
pub fn is_memory_limit(s: &str) -> bool {
    if let Some(p) = s.strip_suffix('%') {
        return p.parse::<u8>().is_ok_and(|n| (1..=100).contains(&n));
    }
    let digits = s.bytes().take_while(|b| b.is_ascii_digit()).count();
    let unit = &s[digits..];
    digits > 0 && ["B", "kB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"].contains(&unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_candidates_never_wrap_and_count_the_room() {
        // At the top of the address space: network 255.255.255.252, +10 is past the broadcast address.
        let top = Subnet::parse("255.255.255.253/30").unwrap();
        assert_eq!(top.member_candidates().count(), 0);
        assert_eq!(top.member_room(), 0);
        // A /29 has 8 addresses: none from the 10th on.
        assert_eq!(Subnet::parse("10.0.0.1/29").unwrap().member_room(), 0);
        // A /28: .10 to .14.
        let small = Subnet::parse("10.0.0.1/28").unwrap();
        let got: Vec<String> = small.member_candidates().map(|a| a.to_string()).collect();
        assert_eq!(got, ["10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14"]);
        assert_eq!(small.member_room(), 5);
        // The gateway inside the range is not room.
        let gw = Subnet::parse("10.0.0.12/28").unwrap();
        assert_eq!(gw.member_room(), 4);
        assert_eq!(gw.member_candidates().count(), 4);
        assert!(gw.is_member_candidate("10.0.0.10".parse().unwrap()));
        assert!(!gw.is_member_candidate("10.0.0.12".parse().unwrap()), "the gateway");
        assert!(!gw.is_member_candidate("10.0.0.9".parse().unwrap()), "below the 10th");
        assert_eq!(Subnet::parse("10.123.45.1/24").unwrap().member_room(), 245);
    }

    #[test]
    fn subnet_bounds() {
        let s = Subnet::parse("10.123.45.1/24").unwrap();
        assert_eq!(s.network().to_string(), "10.123.45.0");
        assert_eq!(s.broadcast().to_string(), "10.123.45.255");
        assert!(s.check_host("10.123.45.11".parse().unwrap()).is_ok());
        assert!(s.check_host("10.123.45.1".parse().unwrap()).is_err());
        assert!(s.check_host("10.123.46.1".parse().unwrap()).is_err());
        assert_eq!(s.member_candidates().next().unwrap().to_string(), "10.123.45.10");
        assert!(Subnet::parse("10.123.45.0/24").is_err());
        assert!(Subnet::parse("10.123.45.1").is_err());
    }

    #[test]
    fn connect_targets() {
        assert!(parse_connect("tcp:10.1.33.11:9090").is_ok());
        assert!(parse_connect("tcp:[::1]:80").is_ok());
        assert!(parse_connect("http://x").is_err());
        assert!(parse_connect("tcp:pod:80").is_err());
    }

    #[test]
    fn memory_limits() {
        assert!(is_memory_limit("4GiB"));
        assert!(is_memory_limit("50%"));
        assert!(!is_memory_limit("4 gigs"));
        assert!(!is_memory_limit("GiB"));
    }
}
