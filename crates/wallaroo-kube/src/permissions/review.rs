//! Asking the API server what an identity may do: SelfSubjectAccessReview for the current
//! one, SubjectAccessReview for another, all at once (a few at a time).

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SelfSubjectAccessReview,
    SelfSubjectAccessReviewSpec, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::Need;
use crate::Cluster;

/// Whose rights a review asks about: the identity making the request, or another one (the
/// identity that applies, asked about by a plan run as someone else).
#[derive(Debug, Clone, Copy)]
pub enum Reviewed<'a> {
    /// SelfSubjectAccessReview: any authenticated identity may ask it.
    Own,
    /// SubjectAccessReview of this username and groups: needs `create subjectaccessreviews`.
    Subject { user: &'a str, groups: &'a [String] },
}

/// Whether the API server refused a review because the identity may not ask it.
pub fn forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// The username the API server knows the current identity by (SelfSubjectReview, which
/// every authenticated identity may ask).
pub async fn whoami(cluster: &Cluster) -> Result<String, kube::Error> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: Api<SelfSubjectReview> = Api::all(cluster.client().clone());
    let answer = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    Ok(answer
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default())
}

/// The needs the current identity lacks, asked of the API server all at once (a few at a
/// time). A review the server cannot answer counts as missing, with its error.
pub async fn missing(cluster: &Cluster, needs: &BTreeSet<Need>) -> Result<Vec<Need>, kube::Error> {
    missing_for(cluster, needs, Reviewed::Own).await
}

/// The needs `who` lacks (see [`missing`]).
pub async fn missing_for(
    cluster: &Cluster,
    needs: &BTreeSet<Need>,
    who: Reviewed<'_>,
) -> Result<Vec<Need>, kube::Error> {
    let own: Api<SelfSubjectAccessReview> = Api::all(cluster.client().clone());
    let other: Api<SubjectAccessReview> = Api::all(cluster.client().clone());
    let reviews = needs.iter().map(|need| {
        let (own, other) = (own.clone(), other.clone());
        async move {
            let (attributes, non_resource) = attributes_of(need);
            let allowed = match who {
                Reviewed::Own => {
                    let review = SelfSubjectAccessReview {
                        spec: SelfSubjectAccessReviewSpec {
                            resource_attributes: attributes,
                            non_resource_attributes: non_resource,
                        },
                        ..Default::default()
                    };
                    let answer = own.create(&PostParams::default(), &review).await?;
                    answer.status.is_some_and(|s| s.allowed)
                }
                Reviewed::Subject { user, groups } => {
                    let review = SubjectAccessReview {
                        spec: SubjectAccessReviewSpec {
                            resource_attributes: attributes,
                            non_resource_attributes: non_resource,
                            user: Some(user.to_string()),
                            groups: Some(groups.to_vec()),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    let answer = other.create(&PostParams::default(), &review).await?;
                    answer.status.is_some_and(|s| s.allowed)
                }
            };
            Ok::<_, kube::Error>((need, allowed))
        }
    });
    let answers: Vec<Result<(&Need, bool), kube::Error>> = futures_util::StreamExt::collect(
        futures_util::StreamExt::buffer_unordered(futures_util::stream::iter(reviews), 16),
    )
    .await;
    let mut lacking = Vec::new();
    for a in answers {
        let (need, allowed) = a?;
        if !allowed {
            lacking.push(need.clone());
        }
    }
    lacking.sort();
    Ok(lacking)
}

/// What a review asks about a need: a resource (with its subresource, `pods/log`, and object
/// name when the need names one) or a non-resource URL.
fn attributes_of(need: &Need) -> (Option<ResourceAttributes>, Option<NonResourceAttributes>) {
    if need.is_non_resource() {
        return (
            None,
            Some(NonResourceAttributes {
                path: Some(need.resource.clone()),
                verb: Some(need.verb.clone()),
            }),
        );
    }
    let (resource, subresource) = match need.resource.split_once('/') {
        Some((r, s)) => (r.to_string(), Some(s.to_string())),
        None => (need.resource.clone(), None),
    };
    (
        Some(ResourceAttributes {
            group: Some(need.group.clone()),
            resource: Some(resource),
            subresource,
            name: need.name.clone(),
            namespace: need.namespace.clone(),
            verb: Some(need.verb.clone()),
            ..Default::default()
        }),
        None,
    )
}
