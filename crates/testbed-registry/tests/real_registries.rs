//! The copy engine against the project's two real registries (`cargo xtask testenv up`): every test image
//! copied with its digests, nothing sent twice, shared layers mounted, a deleted tag seen and restored, indexes.

mod support;

use std::collections::BTreeSet;

use support::*;
use testbed_registry::{ErrorKind, Event, Location, Platform, Platforms};

#[tokio::test]
async fn copies_every_test_image_with_the_source_digests() {
    let (up, local) = (upstream(), local());
    let ns = namespace("every");
    let e = engine();
    let jobs = jobs(&up, &local, &ns);
    let rec = Recorder::default();
    let results = e.copy_all(&jobs, &|p| rec.record(p)).await;
    for (job, r) in jobs.iter().zip(&results) {
        let r = r.as_ref().unwrap_or_else(|err| panic!("{err}"));
        assert!(!r.up_to_date, "{}: the namespace is fresh", job.name);
        let source = e.head_manifest(&job.source).await.unwrap().expect("in the upstream");
        let target = e.head_manifest(&job.target).await.unwrap().expect("copied");
        assert_eq!(target, r.digest, "{}", job.name);
        if job.source.repository == INDEXED {
            // Default platform only: the tag holds the amd64 manifest, by the source's digest of it.
            assert_ne!(target, source, "one platform of an index is tagged alone");
            assert_eq!(target, e.wanted_digest(job).await.unwrap());
            assert_eq!(r.manifests_pushed, 1);
        } else {
            assert_eq!(target, source, "{}: digest kept", job.name);
        }
        // Config and layers: every blob the manifest names is in the target repository.
        assert_eq!(r.blobs_present + r.blobs_mounted + r.blobs_uploaded, 3, "{}: config, base, own layer", job.name);
    }
    // Every job ended with Done.
    assert_eq!(rec.count(|e| matches!(e, Event::Done { up_to_date: false, .. })), jobs.len());
}

#[tokio::test]
async fn a_second_copy_sends_nothing() {
    let (up, local) = (upstream(), local());
    let ns = namespace("again");
    let e = engine();
    let jobs = jobs(&up, &local, &ns);
    for r in e.copy_all(&jobs, &|_| {}).await {
        r.unwrap_or_else(|err| panic!("{err}"));
    }
    // A fresh engine, as a later run would have: it learns nothing from the first one.
    let e = engine();
    let rec = Recorder::default();
    let results = e.copy_all(&jobs, &|p| rec.record(p)).await;
    for r in results {
        let r = r.unwrap_or_else(|err| panic!("{err}"));
        assert!(r.up_to_date, "{}: already there", r.image);
        assert_eq!(
            (r.blobs_uploaded, r.blobs_mounted, r.bytes_uploaded, r.manifests_pushed),
            (0, 0, 0, 0),
            "{}",
            r.image
        );
    }
    assert_eq!(rec.bytes_transferred(), 0, "no blob byte downloaded");
    assert_eq!(
        rec.count(|e| matches!(
            e,
            Event::BlobUploaded { .. } | Event::BlobMounted { .. } | Event::ManifestPushed { .. }
        )),
        0
    );
}

#[tokio::test]
async fn a_shared_base_layer_is_uploaded_once_and_mounted_elsewhere() {
    let (up, local) = (upstream(), local());
    let ns = namespace("shared");
    let e = engine();
    let jobs = jobs(&up, &local, &ns);
    let rec = Recorder::default();
    let reports: Vec<_> = e
        .copy_all(&jobs, &|p| rec.record(p))
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|err| panic!("{err}")))
        .collect();
    // Every image (amd64) shares the base layer: one upload, a mount into each other repository. Every other
    // blob is an image's own.
    let uploaded: usize = reports.iter().map(|r| r.blobs_uploaded).sum();
    let mounted: usize = reports.iter().map(|r| r.blobs_mounted).sum();
    assert_eq!(mounted, IMAGES.len() - 1, "the base mounted into every other repository: {reports:#?}");
    assert_eq!(
        uploaded,
        IMAGES.len() * 3 - (IMAGES.len() - 1),
        "each image's config and own layer, and the base once: {reports:#?}"
    );
    let events = rec.events.lock().unwrap();
    let uploads: Vec<&String> = events
        .iter()
        .filter_map(|(_, e)| if let Event::BlobUploaded { digest, .. } = e { Some(digest) } else { None })
        .collect();
    let distinct: BTreeSet<&&String> = uploads.iter().collect();
    assert_eq!(distinct.len(), uploads.len(), "no blob uploaded twice");
    let mounts: BTreeSet<String> = events
        .iter()
        .filter_map(|(_, e)| if let Event::BlobMounted { digest, .. } = e { Some(digest.clone()) } else { None })
        .collect();
    assert_eq!(mounts.len(), 1, "one blob (the base layer) is mounted: {mounts:?}");
    drop(events);
    let bytes: u64 = reports.iter().map(|r| r.bytes_uploaded).sum();
    assert_eq!(rec.bytes_transferred(), bytes, "what was downloaded is what was uploaded");
}

#[tokio::test]
async fn deleting_one_tag_shows_exactly_that_image_missing_and_a_copy_restores_it() {
    let (up, local) = (upstream(), local());
    let ns = namespace("delete");
    let e = engine();
    let jobs = jobs(&up, &local, &ns);
    for r in e.copy_all(&jobs, &|_| {}).await {
        r.unwrap_or_else(|err| panic!("{err}"));
    }
    let victim = &jobs[1];
    let digest = e.head_manifest(&victim.target).await.unwrap().unwrap();
    delete_manifest(&local, &victim.target.repository, &digest).await;

    let targets: Vec<Location> = jobs.iter().map(|j| j.target.clone()).collect();
    let seen = e.head_manifests(&targets).await;
    let missing: Vec<&str> = jobs
        .iter()
        .zip(&seen)
        .filter(|(_, s)| s.as_ref().expect("HEAD answers").is_none())
        .map(|(j, _)| j.name.as_str())
        .collect();
    assert_eq!(missing, vec![victim.name.as_str()]);

    let e = engine();
    let results = e.copy_all(&jobs, &|_| {}).await;
    for (job, r) in jobs.iter().zip(results) {
        let r = r.unwrap_or_else(|err| panic!("{err}"));
        if job.name == victim.name {
            assert!(!r.up_to_date);
            assert_eq!((r.blobs_uploaded, r.manifests_pushed), (0, 1), "its blobs stayed: only the manifest is sent");
        } else {
            assert!(r.up_to_date, "{}", job.name);
        }
    }
    assert_eq!(e.head_manifest(&victim.target).await.unwrap(), Some(digest));
}

#[tokio::test]
async fn an_index_is_copied_whole_when_every_platform_is_asked_for() {
    let (up, local) = (upstream(), local());
    let ns = namespace("index");
    let e = engine();
    let source = Location::new(up.clone(), INDEXED, "v1.15.9");
    let index_digest = e.head_manifest(&source).await.unwrap().unwrap();
    let arm = Platform::parse("linux/arm64").unwrap();
    for (tag, platforms) in
        [("all", Platforms::All), ("both", Platforms::Only(vec![Platform::linux_amd64(), arm.clone()]))]
    {
        let job = testbed_registry::CopyJob::new(
            source.clone(),
            Location::new(local.clone(), format!("{ns}/{INDEXED}"), tag),
        )
        .platforms(platforms);
        let r = e.copy(&job, &|_| {}).await.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(r.digest, index_digest, "the whole index, unchanged");
        assert_eq!(e.head_manifest(&job.target).await.unwrap(), Some(index_digest.clone()));
        if tag == "all" {
            assert_eq!(r.manifests_pushed, 3, "two platforms and the index");
            assert_eq!(r.blobs_uploaded, 6, "each platform's config, base and own layer");
        }
    }
    // arm64 alone: its manifest under the tag.
    let job =
        testbed_registry::CopyJob::new(source.clone(), Location::new(local.clone(), format!("{ns}/{INDEXED}"), "arm"))
            .platforms(Platforms::Only(vec![arm]));
    let r = e.copy(&job, &|_| {}).await.unwrap_or_else(|err| panic!("{err}"));
    assert_eq!((r.blobs_present, r.manifests_pushed), (3, 1), "the arm64 blobs came with the whole index");
    assert_ne!(r.digest, index_digest);
    // A platform the index lacks: an error that says what it has.
    let job = testbed_registry::CopyJob::new(source, Location::new(local.clone(), format!("{ns}/{INDEXED}"), "s390x"))
        .platforms(Platforms::Only(vec![Platform::parse("linux/s390x").unwrap()]));
    let err = e.copy(&job, &|_| {}).await.unwrap_err();
    assert!(matches!(*err.kind, ErrorKind::NoPlatform { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(INDEXED) && text.contains("linux/s390x") && text.contains("linux/amd64, linux/arm64"),
        "{text}"
    );
}

#[tokio::test]
async fn a_copy_within_one_registry_mounts_from_the_source_repository() {
    let up = upstream();
    let ns = namespace("within");
    let e = engine();
    let job = testbed_registry::CopyJob::new(
        Location::new(up.clone(), "karmada/karmada-webhook", "v1.15.9"),
        Location::new(up.clone(), format!("{ns}/webhook"), "copy"),
    );
    let rec = Recorder::default();
    let r = e.copy(&job, &|p| rec.record(p)).await.unwrap_or_else(|err| panic!("{err}"));
    assert_eq!((r.blobs_mounted, r.blobs_uploaded), (3, 0));
    assert_eq!(rec.bytes_transferred(), 0);
    assert_eq!(e.head_manifest(&job.target).await.unwrap(), e.head_manifest(&job.source).await.unwrap());
}
