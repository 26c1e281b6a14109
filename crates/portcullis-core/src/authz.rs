//! Management API authority, typed: a [`Grant`] is a resource [`Family`] and
//! a [`Verb`]; its scope string is `{family}:{verb}`. The families and the
//! verbs each offers are declared here once; the scope catalogue the
//! Management API advertises is exactly this list (a test pins that every
//! advertised scope guards a route and every route is guarded).

use std::fmt;

/// A family of Management API resources, guarded by one set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Users,
    Sessions,
    Roles,
    Permissions,
    Clients,
    /// Grants of APIs to clients: apart from `clients`, because a grant on
    /// the Management API hands out its scopes (Auth0's `client_grants`).
    ClientGrants,
    ResourceServers,
    Scopes,
    SigningKeys,
    AuditEvents,
    Environment,
    Apps,
    Organizations,
    /// Memberships of users in organizations, and their roles.
    Memberships,
    /// Invitations to join an organization.
    Invitations,
    /// The environment's own host names.
    CustomDomains,
    /// Webhooks and their deliveries.
    Webhooks,
}

/// What a request does to a family: GET and HEAD read, DELETE deletes,
/// every other method writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Read,
    Write,
    Delete,
}

const RWD: &[Verb] = &[Verb::Read, Verb::Write, Verb::Delete];
const RW: &[Verb] = &[Verb::Read, Verb::Write];

impl Family {
    pub const ALL: [Family; 17] = [
        Family::Users,
        Family::Sessions,
        Family::Roles,
        Family::Permissions,
        Family::Clients,
        Family::ClientGrants,
        Family::ResourceServers,
        Family::Scopes,
        Family::SigningKeys,
        Family::AuditEvents,
        Family::Environment,
        Family::Apps,
        Family::Organizations,
        Family::Memberships,
        Family::Invitations,
        Family::CustomDomains,
        Family::Webhooks,
    ];

    /// The scope prefix.
    pub const fn name(self) -> &'static str {
        match self {
            Family::Users => "users",
            Family::Sessions => "sessions",
            Family::Roles => "roles",
            Family::Permissions => "permissions",
            Family::Clients => "clients",
            Family::ClientGrants => "client_grants",
            Family::ResourceServers => "resource_servers",
            Family::Scopes => "scopes",
            Family::SigningKeys => "signing_keys",
            Family::AuditEvents => "audit_events",
            Family::Environment => "environment",
            Family::Apps => "apps",
            Family::Organizations => "organizations",
            Family::Memberships => "memberships",
            Family::Invitations => "invitations",
            Family::CustomDomains => "custom_domains",
            Family::Webhooks => "webhooks",
        }
    }

    /// The verbs some route of the family needs.
    pub const fn verbs(self) -> &'static [Verb] {
        match self {
            Family::AuditEvents => &[Verb::Read],
            Family::Environment => RW,
            _ => RWD,
        }
    }

    pub const fn grant(self, verb: Verb) -> Grant {
        Grant { family: self, verb }
    }

    fn index(self) -> u32 {
        Family::ALL.iter().position(|f| *f == self).expect("every family is in ALL") as u32
    }
}

impl Verb {
    pub const fn name(self) -> &'static str {
        match self {
            Verb::Read => "read",
            Verb::Write => "write",
            Verb::Delete => "delete",
        }
    }

    fn parse(name: &str) -> Option<Verb> {
        [Verb::Read, Verb::Write, Verb::Delete].into_iter().find(|v| v.name() == name)
    }
}

/// One Management API permission: `users:read`, `clients:write`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grant {
    pub family: Family,
    pub verb: Verb,
}

impl Grant {
    /// The grant a scope string names, if it is one the catalogue lists.
    pub fn parse(scope: &str) -> Option<Grant> {
        let (family, verb) = scope.split_once(':')?;
        let family = Family::ALL.into_iter().find(|f| f.name() == family)?;
        let verb = Verb::parse(verb)?;
        family.verbs().contains(&verb).then_some(Grant { family, verb })
    }

    fn bit(self) -> u128 {
        1 << (self.family.index() * 3 + self.verb as u32)
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.family.name(), self.verb.name())
    }
}

/// Every grant there is, in catalogue order.
pub fn catalogue() -> impl Iterator<Item = Grant> {
    Family::ALL.into_iter().flat_map(|family| family.verbs().iter().map(move |verb| family.grant(*verb)))
}

/// The Management API's scopes: the catalogue as strings.
pub fn management_scopes() -> Vec<String> {
    catalogue().map(|grant| grant.to_string()).collect()
}

/// A stored resource and the family whose scopes guard it: the generic
/// reads (`services::fetch`, `list`, `count`, `fetch_many`) check it.
pub trait Guarded {
    const FAMILY: Family;
}

/// A set of grants (a bit per family and verb: checked on every request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants(u128);

// Three bits per family must fit the set.
const _: () = assert!(Family::ALL.len() * 3 <= u128::BITS as usize);

impl Grants {
    /// The grants named by `scopes`; other scopes are ignored.
    pub fn from_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Grants {
        Grants(scopes.into_iter().filter_map(Grant::parse).fold(0, |bits, grant| bits | grant.bit()))
    }

    pub fn contains(self, grant: Grant) -> bool {
        self.0 & grant.bit() != 0
    }

    /// The grants in both sets.
    pub fn intersection(self, other: Grants) -> Grants {
        Grants(self.0 & other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_grants_are_one_to_one() {
        let scopes = management_scopes();
        assert!(scopes.len() <= 128, "one bit per grant");
        for scope in &scopes {
            let grant = Grant::parse(scope).unwrap();
            assert_eq!(&grant.to_string(), scope);
            let held = Grants::from_scopes([scope.as_str()]);
            assert!(catalogue().all(|other| held.contains(other) == (other == grant)), "{scope}");
        }
        for bad in
            ["users", "users:", ":read", "users:admin", "audit_events:write", "billing:read", "Users:read"]
        {
            assert_eq!(Grant::parse(bad), None, "{bad}");
        }
        assert_eq!(Grants::from_scopes(["openid", "users:read x"]), Grants::default());
        let both = Grants::from_scopes(["users:read", "roles:read"])
            .intersection(Grants::from_scopes(["roles:read"]));
        assert_eq!(both, Grants::from_scopes(["roles:read"]));
    }
}
