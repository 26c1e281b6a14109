//! Requests to URLs that customers give us (webhook endpoints today). Such a
//! URL must not become a way into the operator's own network: targets that
//! are loopback, private, link-local (cloud metadata at 169.254.169.254),
//! shared, reserved or multicast are refused unless the installation allows
//! them (`allow_private_targets`, for development). The check applies to
//! the addresses a name resolves to, and the client connects only to the
//! addresses that passed, so a name that resolves differently the second
//! time (DNS rebinding) cannot slip through. Redirects are not followed and
//! proxies from the environment are not used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", 0.0.0.0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: cloud metadata
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10: carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24: IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // 198.18/15: benchmarking
        || ip.is_documentation()
        || ip.is_multicast()
        || a >= 240) // reserved, and broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return is_public_v4(embedded(s[6], s[7])); // NAT64
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4
    }
    !(s[..6] == [0; 6] // ::, ::1, and the deprecated IPv4-compatible ::a.b.c.d
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254: metadata)
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0; 3])) // discard-only
}

/// Checks a customer-given URL when it is stored: https (http only where
/// private targets are allowed, for local development), a host, no user
/// name or password, no fragment, and an IP address only if public.
pub fn check_url(text: &str, allow_private: bool) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err("must use https".into()),
        _ => return Err("must be an https URL".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("must not contain a fragment".into());
    }
    check_host(&url, allow_private)?;
    Ok(url)
}

/// Refuses a URL whose host is a non-public IP address (a name is checked
/// when it is resolved, at each connection).
pub fn check_host(url: &Url, allow_private: bool) -> Result<(), String> {
    let ip = match url.host() {
        None => return Err("must have a host".into()),
        Some(url::Host::Domain(_)) => return Ok(()),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(format!("points to {ip}, which is not a public address"))
    }
}

/// Resolves names with the system's resolver and keeps only the addresses
/// the policy allows; none left is an error that names the host.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                resolved.iter().copied().filter(|a| allow_private || is_public(a.ip())).collect();
            if allowed.is_empty() {
                let why: Box<dyn std::error::Error + Send + Sync> = if resolved.is_empty() {
                    format!("{host} has no addresses").into()
                } else {
                    format!("{host} resolves only to addresses that are not public").into()
                };
                return Err(why);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client for customer-given URLs: guarded resolution, no
/// redirects, no proxies from the environment, one deadline per request.
pub fn client(allow_private: bool, timeout: Duration, user_agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(user_agent)
        .build()
        .expect("a TLS backend is compiled in")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "192.0.0.8",
            "198.18.0.1",
            "192.0.2.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(!public(ip), "{ip} must not count as public");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in
            ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:1.1.1.1"]
        {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[test]
    fn urls_are_checked_when_stored() {
        assert!(check_url("https://hooks.example.com/in", false).is_ok());
        assert!(check_url("https://93.184.215.14/in", false).is_ok());
        for (url, why) in [
            ("http://hooks.example.com/in", "https"),
            ("ftp://hooks.example.com/in", "https"),
            ("https://user:pw@hooks.example.com/", "user name"),
            ("https://hooks.example.com/#x", "fragment"),
            ("https://127.0.0.1/in", "not a public address"),
            ("https://[::1]/in", "not a public address"),
            ("https://169.254.169.254/latest/meta-data", "not a public address"),
            ("not a url", "not a URL"),
        ] {
            let error = check_url(url, false).unwrap_err();
            assert!(error.contains(why), "{url}: {error}");
        }
        assert!(check_url("http://127.0.0.1:8080/in", true).is_ok(), "development allows loopback");
    }

    #[tokio::test]
    async fn names_that_resolve_to_loopback_are_refused_at_connection() {
        let client = client(false, Duration::from_secs(2), "test");
        let error = client.post("http://localhost:9/").send().await.unwrap_err();
        let chain = format!("{:?}", error);
        assert!(chain.contains("not public"), "{chain}");
    }
}
