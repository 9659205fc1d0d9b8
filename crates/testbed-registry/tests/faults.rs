//! Faults, with the real local registry as the target: a source that stops in the middle of a copy (a proxy
//! in front of the real upstream cuts it), a blob whose bytes do not match its digest and a 401 (tiny
//! in-test registries that misbehave on purpose), a missing tag. Each is an error naming the image, nothing
//! of a failed image is tagged in the target, and a later copy converges.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use support::*;
use testbed_registry::{CopyJob, Credentials, ErrorKind, Location, Registry, Role};

#[tokio::test]
async fn a_source_that_stops_mid_copy_leaves_nothing_tagged_and_a_later_copy_converges() {
    let (up, local) = (upstream(), local());
    let ns = namespace("cut");
    // The upstream's blobs are about 36 MB: cut after 3 MB, in the middle of the first layers.
    let mut proxy = CutProxy::start(up.host(), 3 << 20).await;
    let through = Arc::new(Registry::insecure(proxy.host.clone()));
    let jobs = jobs(&through, &local, &ns);
    let e = engine();
    let results = e.copy_all(&jobs, &|_| {}).await;
    assert!(proxy.has_cut());
    let mut failed = 0;
    for (job, r) in jobs.iter().zip(&results) {
        let present = e.head_manifest(&job.target).await.expect("the target answers");
        match r {
            Ok(r) => assert_eq!(present.as_deref(), Some(r.digest.as_str()), "{}", job.name),
            Err(err) => {
                eprintln!("{err}");
                failed += 1;
                let text = err.to_string();
                assert!(
                    text.contains(&job.name) && text.contains(&proxy.host),
                    "names the image and the registry: {text}"
                );
                match &*err.kind {
                    ErrorKind::Interrupted { role: Role::Source, .. }
                    | ErrorKind::Unreachable { role: Role::Source, .. } => {}
                    other => panic!("{}: {other}", job.name),
                }
                assert_eq!(present, None, "{}: a failed image is not tagged: {text}", job.name);
            }
        }
    }
    assert!(failed > 0, "the cut made copies fail");

    proxy.heal().await;
    let results = e.copy_all(&jobs, &|_| {}).await;
    for (job, r) in jobs.iter().zip(results) {
        let r = r.unwrap_or_else(|err| panic!("{err}"));
        let source = Location::new(up.clone(), job.source.repository.clone(), job.source.reference.clone());
        let wanted = e.wanted_digest(&CopyJob::new(source, job.target.clone())).await.unwrap();
        assert_eq!(r.digest, wanted, "{}", job.name);
        assert_eq!(e.head_manifest(&job.target).await.unwrap(), Some(wanted), "{}", job.name);
    }
}

/// A registry serving one small OCI image `fake/app:v1`, the layer's bytes corrupted while `corrupt` is set,
/// answering manifest requests only when their Accept header names the manifest types.
fn image_server(corrupt: Arc<AtomicBool>) -> (Handler, Vec<u8>, String) {
    let (manifest, config, layer) = small_image("digest", 300_000);
    let layer_digest = sha256(&layer);
    let m = manifest.clone();
    let handler: Handler =
        Arc::new(move |req: &Request| serve_image(req, &m, &config, &layer, corrupt.load(Ordering::SeqCst)));
    (handler, manifest, layer_digest)
}

fn serve_image(req: &Request, manifest: &[u8], config: &[u8], layer: &[u8], corrupt: bool) -> Response {
    let unknown =
        |code: &str| Response::new(404).body(format!(r#"{{"errors":[{{"code":"{code}","message":"unknown"}}]}}"#));
    if req.path == "/v2/" {
        return Response::new(200).body("{}");
    }
    if req.path == "/v2/fake/app/manifests/v1" || req.path == format!("/v2/fake/app/manifests/{}", sha256(manifest)) {
        let accept = req.header("accept").unwrap_or("");
        if !(accept.contains(testbed_registry::OCI_MANIFEST) && accept.contains(testbed_registry::OCI_INDEX)) {
            return unknown("MANIFEST_UNKNOWN");
        }
        return Response::new(200)
            .header("Content-Type", testbed_registry::OCI_MANIFEST)
            .header("Docker-Content-Digest", &sha256(manifest))
            .body(manifest.to_vec());
    }
    if req.path == format!("/v2/fake/app/blobs/{}", sha256(config)) {
        return Response::new(200).body(config.to_vec());
    }
    if req.path == format!("/v2/fake/app/blobs/{}", sha256(layer)) {
        let mut bytes = layer.to_vec();
        if corrupt {
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
        }
        return Response::new(200).body(bytes);
    }
    unknown("BLOB_UNKNOWN")
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_is_never_pushed() {
    let local = local();
    let ns = namespace("digest");
    let corrupt = Arc::new(AtomicBool::new(true));
    let (handler, manifest, layer_digest) = image_server(corrupt.clone());
    let fake = FakeRegistry::start(handler).await;
    let job = CopyJob::new(
        Location::new(Arc::new(Registry::insecure(fake.host.clone())), "fake/app", "v1"),
        Location::new(local.clone(), format!("{ns}/app"), "v1"),
    )
    .named("app");
    let e = engine();
    let err = e.copy(&job, &|_| {}).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&*err.kind, ErrorKind::DigestMismatch { role: Role::Source, expected, .. } if *expected == layer_digest),
        "{text}"
    );
    assert!(text.starts_with("image app: ") && text.contains(&layer_digest) && text.contains(&fake.host), "{text}");
    assert!(!has_blob(&local, &job.target.repository, &layer_digest).await, "the bad blob was not pushed");
    assert_eq!(e.head_manifest(&job.target).await.unwrap(), None, "nothing tagged");

    corrupt.store(false, Ordering::SeqCst);
    let r = e.copy(&job, &|_| {}).await.unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(r.digest, sha256(&manifest));
    assert_eq!(e.head_manifest(&job.target).await.unwrap(), Some(sha256(&manifest)));
    // Every manifest request named the manifest types (the fake answers 404 otherwise).
    let requests = fake.requests.lock().unwrap();
    let manifests: Vec<_> = requests.iter().filter(|r| r.path.contains("/manifests/")).collect();
    assert!(!manifests.is_empty());
    for r in manifests {
        let accept = r.header("accept").unwrap_or("");
        for t in [
            testbed_registry::OCI_INDEX,
            testbed_registry::OCI_MANIFEST,
            testbed_registry::DOCKER_LIST,
            testbed_registry::DOCKER_MANIFEST,
        ] {
            assert!(accept.contains(t), "{} {}: Accept {accept:?} lacks {t}", r.method, r.path);
        }
    }
}

#[tokio::test]
async fn a_401_names_the_registry_and_asks_for_credentials_then_a_token_is_fetched() {
    let local = local();
    let ns = namespace("auth");
    let (manifest, config, layer) = small_image("auth", 50_000);
    let host = Arc::new(Mutex::new(String::new()));
    let realm_host = host.clone();
    let m = manifest.clone();
    let handler: Handler = Arc::new(move |req: &Request| {
        let auth = req.header("authorization").unwrap_or("");
        if req.path.starts_with("/token") {
            // user:s3cret
            return if auth == "Basic dXNlcjpzM2NyZXQ=" {
                Response::new(200).body(r#"{"token":"tok-123"}"#)
            } else {
                Response::new(401).body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#)
            };
        }
        if auth != "Bearer tok-123" {
            let challenge = format!(
                r#"Bearer realm="http://{}/token",service="fake",scope="repository:fake/app:pull""#,
                realm_host.lock().unwrap()
            );
            return Response::new(401)
                .header("WWW-Authenticate", &challenge)
                .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#);
        }
        serve_image(req, &m, &config, &layer, false)
    });
    let fake = FakeRegistry::start(handler).await;
    *host.lock().unwrap() = fake.host.clone();
    let target = Location::new(local.clone(), format!("{ns}/app"), "v1");
    let job = |registry: Registry| {
        CopyJob::new(Location::new(Arc::new(registry), "fake/app", "v1"), target.clone()).named("app")
    };
    let e = engine();

    let err = e.copy(&job(Registry::insecure(fake.host.clone())), &|_| {}).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&*err.kind, ErrorKind::Unauthorized { role: Role::Source, status: 401, had_credentials: false, .. }),
        "{text}"
    );
    assert!(
        text.contains("image app")
            && text.contains(&fake.host)
            && text.contains("credentials are needed (none were given)"),
        "{text}"
    );

    let wrong = Credentials::Basic { username: "user".into(), password: "wr0ng-pa55".into() };
    let err = e.copy(&job(Registry::insecure(fake.host.clone()).with_credentials(wrong)), &|_| {}).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(&*err.kind, ErrorKind::Unauthorized { had_credentials: true, .. }), "{text}");
    assert!(text.contains("refused"), "{text}");
    assert!(!text.contains("wr0ng-pa55") && !text.contains("dXNlcjp3cjBuZy1wYTU1"), "no credentials in errors: {text}");
    assert_eq!(e.head_manifest(&target).await.unwrap(), None);

    let right = Credentials::Basic { username: "user".into(), password: "s3cret".into() };
    let r = e
        .copy(&job(Registry::insecure(fake.host.clone()).with_credentials(right)), &|_| {})
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(e.head_manifest(&target).await.unwrap(), Some(r.digest.clone()));
    assert_eq!(r.digest, sha256(&manifest));
}

#[tokio::test]
async fn a_missing_tag_names_the_image_then_converges_once_it_exists() {
    let (up, local) = (upstream(), local());
    let ns = namespace("missing");
    let e = engine();
    // A tag the upstream does not have (yet), in a repository of this test's own.
    let source = Location::new(up.clone(), format!("{ns}/scheduler"), "v9.9.9");
    let job = CopyJob::new(source.clone(), Location::new(local.clone(), format!("{ns}/scheduler"), "v9.9.9"));
    let err = e.copy(&job, &|_| {}).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(&*err.kind, ErrorKind::NotFound { role: Role::Source, .. }), "{text}");
    assert!(
        text.contains(&format!("image {ns}/scheduler:v9.9.9"))
            && text.contains("tag v9.9.9")
            && text.contains(up.host()),
        "{text}"
    );
    assert_eq!(e.head_manifest(&job.target).await.unwrap(), None);

    // The tag appears upstream (copied there by the engine itself, within one registry)...
    let seed = CopyJob::new(Location::new(up.clone(), "karmada/karmada-scheduler", "v1.15.9"), source);
    e.copy(&seed, &|_| {}).await.unwrap_or_else(|err| panic!("{err}"));
    // ...and the same copy converges.
    let r = e.copy(&job, &|_| {}).await.unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(e.head_manifest(&job.target).await.unwrap(), Some(r.digest.clone()));
    assert_eq!(Some(r.digest), e.head_manifest(&seed.source).await.unwrap());
}
