//! The crawlers' address guard: a request may only reach public addresses, unless the operator
//! (never whoever writes a TwinDataset) allows a network. Checked on every resolved address,
//! so a DNS name or a redirect cannot lead a crawler to loopback, the pod network, the node's
//! link-local services or a cloud metadata endpoint.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
    /// 169.254/16, fe80::/10 (node-local services live here).
    LinkLocal,
    /// 169.254.169.254, fd00:ec2::254 and other cloud instance-metadata endpoints.
    CloudMetadata,
    /// 100.64/10, carrier-grade NAT (also Alibaba's metadata endpoint).
    SharedAddressSpace,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// Multicast and broadcast.
    Multicast,
    /// 192.0.0.0/24, 198.18/15, 240/4, documentation and NAT64 ranges: never a crawler's target.
    Reserved,
}

impl AddressClass {
    fn describe(self) -> &'static str {
        match self {
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::CloudMetadata => "a cloud metadata endpoint",
            AddressClass::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            AddressClass::Unspecified => "an unspecified address",
            AddressClass::Multicast => "a multicast or broadcast address",
            AddressClass::Reserved => "a reserved address",
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, _] = ip.octets();
    let metadata = [
        Ipv4Addr::new(169, 254, 169, 254),
        Ipv4Addr::new(169, 254, 170, 2),
        Ipv4Addr::new(100, 100, 100, 200),
    ];
    if metadata.contains(&ip) {
        Some(AddressClass::CloudMetadata)
    } else if ip.is_loopback() {
        Some(AddressClass::Loopback)
    } else if ip.is_private() {
        Some(AddressClass::Private)
    } else if ip.is_link_local() {
        Some(AddressClass::LinkLocal)
    } else if a == 100 && (64..128).contains(&b) {
        Some(AddressClass::SharedAddressSpace)
    } else if a == 0 {
        Some(AddressClass::Unspecified)
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some(AddressClass::Multicast)
    } else if (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
        || ip.is_documentation()
    {
        Some(AddressClass::Reserved)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let segments = ip.segments();
    if segments == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] {
        Some(AddressClass::CloudMetadata)
    } else if ip.is_loopback() {
        Some(AddressClass::Loopback)
    } else if ip.is_unspecified() {
        Some(AddressClass::Unspecified)
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some(AddressClass::Private)
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some(AddressClass::LinkLocal)
    } else if ip.is_multicast() {
        Some(AddressClass::Multicast)
    } else if (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || (segments[0] == 0x0064 && segments[1] == 0xff9b)
    {
        // Documentation, and NAT64 (which can embed any IPv4 address, private ones too).
        Some(AddressClass::Reserved)
    } else {
        None
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to connect to {address} ({}): crawlers reach only public addresses unless the operator allows the network (crawler.allowNetworks)",
    class.describe()
)]
pub struct Refusal {
    /// The refused address.
    pub address: IpAddr,
    /// What kind of address it is.
    pub class: AddressClass,
}

/// Public addresses, plus the networks the operator allows.
#[derive(Debug, Clone, Default)]
pub struct NetworkGuard {
    allowed: Vec<IpNet>,
}

impl NetworkGuard {
    /// A guard allowing the given CIDRs (comma- or space-separated, as the operator passes them).
    pub fn new(allowed: &str) -> Result<Self, String> {
        let allowed = allowed
            .split([',', ' '])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse::<IpNet>()
                    .map_err(|e| format!("invalid network {c:?} in the crawler allow-list: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }

    /// Whether a crawler may connect to `address`.
    pub fn check(&self, address: IpAddr) -> Result<(), Refusal> {
        let class = match address {
            IpAddr::V4(v4) => classify_v4(v4),
            IpAddr::V6(v6) => classify_v6(v6),
        };
        match class {
            None => Ok(()),
            Some(_) if self.allowed.iter().any(|net| net.contains(&address)) => Ok(()),
            Some(class) => Err(Refusal { address, class }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(guard: &NetworkGuard, address: &str) -> Option<AddressClass> {
        guard.check(address.parse().unwrap()).err().map(|r| r.class)
    }

    #[test]
    fn only_public_addresses_pass_by_default() {
        let guard = NetworkGuard::default();
        for (address, class) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.1.2.3", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.0.0.5", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("169.254.10.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("169.254.169.254", AddressClass::CloudMetadata),
            ("fd00:ec2::254", AddressClass::CloudMetadata),
            ("100.100.100.200", AddressClass::CloudMetadata),
            ("100.64.0.1", AddressClass::SharedAddressSpace),
            ("0.0.0.0", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Multicast),
            ("198.18.0.1", AddressClass::Reserved),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:169.254.169.254", AddressClass::CloudMetadata),
            ("64:ff9b::a00:1", AddressClass::Reserved),
        ] {
            assert_eq!(refused(&guard, address), Some(class), "{address}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert_eq!(refused(&guard, public), None, "{public}");
        }
    }

    #[test]
    fn the_allow_list_opens_only_its_networks() {
        let guard = NetworkGuard::new("10.0.0.0/8, 127.0.0.1/32").unwrap();
        assert_eq!(refused(&guard, "10.20.30.40"), None);
        assert_eq!(refused(&guard, "127.0.0.1"), None);
        assert_eq!(refused(&guard, "127.0.0.2"), Some(AddressClass::Loopback));
        assert_eq!(refused(&guard, "169.254.169.254"), Some(AddressClass::CloudMetadata));
        let message = guard.check("169.254.169.254".parse().unwrap()).unwrap_err().to_string();
        assert!(
            message.contains("cloud metadata endpoint") && message.contains("crawler.allowNetworks"),
            "{message}"
        );
        assert!(NetworkGuard::new("10.0.0.0/33").unwrap_err().contains("invalid network"));
        assert!(NetworkGuard::new("").unwrap().check("10.0.0.1".parse().unwrap()).is_err());
    }
}
