//! Who calls and whether they may, the kube-rbac-proxy way: the bearer
//! token is checked with a TokenReview (any token the API server accepts:
//! ServiceAccount tokens, OIDC, …) and each call with a
//! SubjectAccessReview of what it does, so the cluster's RBAC decides.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The user the API server says a token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a call does to which objects: a SubjectAccessReview's resource
/// attributes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub verb: &'static str,
    pub resource: &'static str,
    /// Empty: every namespace.
    pub namespace: String,
    pub name: Option<String>,
}

impl Access {
    pub fn backfills(verb: &'static str, namespace: &str, name: Option<&str>) -> Self {
        Self {
            verb,
            resource: "backfills",
            namespace: namespace.to_string(),
            name: name.map(str::to_string),
        }
    }

    pub fn schedules(verb: &'static str, namespace: &str, name: Option<&str>) -> Self {
        Self {
            verb,
            resource: "schedules",
            namespace: namespace.to_string(),
            name: name.map(str::to_string),
        }
    }

    /// How kubectl would say the refusal.
    pub fn describe(&self) -> String {
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", self.namespace)
        };
        format!(
            "cannot {} resource \"{}\" in API group \"backfill.dev\" {scope}",
            self.verb, self.resource
        )
    }
}

/// The bearer token of a request, or why there is none.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("no Authorization header: send \"Authorization: Bearer <token>\"")
    })?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    let (scheme, token) = text.split_once(' ').ok_or_else(|| {
        ApiError::unauthorized("the Authorization header is not \"Bearer <token>\"")
    })?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized(
            "the Authorization header is not \"Bearer <token>\"",
        ));
    }
    Ok(token)
}

/// The user of `token`, by a TokenReview; 401 when the API server does
/// not accept it.
pub async fn authenticate(client: &Client, token: &str) -> Result<User, ApiError> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            ..TokenReviewSpec::default()
        },
        ..TokenReview::default()
    };
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| ApiError::from_kube(e, &|_| None))?;
    let status = answer.status.unwrap_or_default();
    match (status.authenticated, status.user) {
        (Some(true), Some(user)) if user.username.as_deref().is_some_and(|u| !u.is_empty()) => {
            Ok(User {
                username: user.username.unwrap_or_default(),
                uid: user.uid,
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default(),
            })
        }
        _ => Err(ApiError::unauthorized(match status.error {
            Some(e) if !e.is_empty() => format!("the token was not accepted: {e}"),
            _ => "the token was not accepted".to_string(),
        })),
    }
}

/// Whether `user` may do `access`, by a SubjectAccessReview; 403 when
/// not.
pub async fn authorize(client: &Client, user: &User, access: &Access) -> Result<(), ApiError> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.username.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: Some(user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some("backfill.dev".into()),
                version: Some("v1alpha1".into()),
                resource: Some(access.resource.into()),
                verb: Some(access.verb.into()),
                namespace: Some(access.namespace.clone()),
                name: access.name.clone(),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| ApiError::from_kube(e, &|_| None))?;
    let status = answer.status.unwrap_or_default();
    if status.allowed && !status.denied.unwrap_or(false) {
        Ok(())
    } else {
        Err(refusal(user, access))
    }
}

/// How long a review's answer is used again, as the API server's own
/// delegating authenticator and authorizer cache theirs: a revoked token
/// or role binding takes effect within this.
pub const REVIEW_TTL: Duration = Duration::from_secs(10);
/// Answers remembered at most, per kind.
const MAX_REVIEWS: usize = 4_096;

/// Recent TokenReview and SubjectAccessReview answers, so that a client's
/// burst of calls costs the API server one review of each kind.
#[derive(Default)]
pub struct Reviews {
    tokens: Mutex<HashMap<[u8; 32], (User, Instant)>>,
    access: Mutex<HashMap<AccessKey, (bool, Instant)>>,
}

/// Who (name, UID, groups) asks to do what.
type AccessKey = (String, Option<String>, Vec<String>, Access);

/// A cache lookup, or `None` when absent or older than [`REVIEW_TTL`].
fn fresh<K: std::hash::Hash + Eq, V: Clone>(
    map: &Mutex<HashMap<K, (V, Instant)>>,
    key: &K,
) -> Option<V> {
    let map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.get(key)
        .filter(|(_, at)| at.elapsed() < REVIEW_TTL)
        .map(|(v, _)| v.clone())
}

/// Remembers `value`, keeping the map bounded (the expired go first, then
/// everything).
fn remember<K: std::hash::Hash + Eq, V>(map: &Mutex<HashMap<K, (V, Instant)>>, key: K, value: V) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_REVIEWS {
        map.retain(|_, (_, at)| at.elapsed() < REVIEW_TTL);
        if map.len() >= MAX_REVIEWS {
            map.clear();
        }
    }
    map.insert(key, (value, Instant::now()));
}

impl Reviews {
    /// [`authenticate`], answered from the cache when it can be.
    pub async fn authenticate(&self, client: &Client, token: &str) -> Result<User, ApiError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(user) = fresh(&self.tokens, &key) {
            return Ok(user);
        }
        // Refusals are not remembered: a token the API server just
        // minted may not be accepted yet.
        let user = authenticate(client, token).await?;
        remember(&self.tokens, key, user.clone());
        Ok(user)
    }

    /// [`authorize`], answered from the cache when it can be.
    pub async fn authorize(
        &self,
        client: &Client,
        user: &User,
        access: &Access,
    ) -> Result<(), ApiError> {
        let key = (
            user.username.clone(),
            user.uid.clone(),
            user.groups.clone(),
            access.clone(),
        );
        let allowed = match fresh(&self.access, &key) {
            Some(allowed) => allowed,
            None => {
                let allowed = match authorize(client, user, access).await {
                    Ok(()) => true,
                    Err(e) if e.status == axum::http::StatusCode::FORBIDDEN => false,
                    Err(e) => return Err(e),
                };
                remember(&self.access, key, allowed);
                allowed
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(refusal(user, access))
        }
    }
}

fn refusal(user: &User, access: &Access) -> ApiError {
    ApiError::forbidden(format!("User {:?} {}", user.username, access.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_a_bearer_token_is_a_token() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(bearer_token(&with("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&with("bearer  abc ")).unwrap(), "abc");
        for bad in ["Basic abc", "Bearer ", "Bearer", "abc"] {
            assert!(bearer_token(&with(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            bearer_token(&HeaderMap::new()).unwrap_err().status,
            axum::http::StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn remembered_answers_expire_and_stay_bounded() {
        let map: Mutex<HashMap<u32, (bool, Instant)>> = Mutex::default();
        for k in 0..(MAX_REVIEWS as u32 + 10) {
            remember(&map, k, true);
            assert!(map.lock().unwrap().len() <= MAX_REVIEWS);
        }
        let last = MAX_REVIEWS as u32 + 9;
        assert_eq!(fresh(&map, &last), Some(true));
        map.lock()
            .unwrap()
            .insert(1, (true, Instant::now() - REVIEW_TTL));
        assert_eq!(fresh(&map, &1), None);
    }

    #[test]
    fn a_refusal_reads_as_kubectls() {
        assert_eq!(
            Access::backfills("patch", "team-a", Some("jan")).describe(),
            "cannot patch resource \"backfills\" in API group \"backfill.dev\" in the namespace \"team-a\""
        );
        assert!(
            Access::backfills("list", "", None)
                .describe()
                .ends_with("at the cluster scope")
        );
    }
}
