//! Uploading and downloading volumes over HTTP, streamed: the body goes
//! to (or comes from) the file one chunk at a time, never whole in memory.
//!
//! - `PUT .../data[?format=raw|qcow2]` makes a new volume from the body
//!   (written to a hidden scratch file, checked, then renamed into place);
//!   without `format` the upload's own first bytes decide. An uploaded
//!   qcow2 image must stand alone (no backing file: it could name any file
//!   of the node).
//! - `GET .../data` sends the image file as stored (only for a volume
//!   without snapshots or a template under it); `?format=raw` sends what
//!   the guest sees, whatever the chain.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::copy::CHUNK;
use super::image::{self, Scratch};
use super::meta;
use super::volumes::meta_of;
use super::{blocking, sniff_format, valid_name, Storage, VolumeFormat, VolumeRef};
use crate::error::ApiError;

impl Storage {
    /// Receives `body` as the new volume `v`.
    pub async fn upload(
        &self,
        v: VolumeRef,
        format: Option<VolumeFormat>,
        body: Body,
    ) -> Result<Response, ApiError> {
        if !valid_name(&v.name) {
            return Err(ApiError::bad_request(format!(
                "'{}' is not a volume name",
                v.name
            )));
        }
        let dir = self.usable_dir(&v.pool)?;
        let claim = self.claim_unchecked(&v, "upload")?;
        if dir.join(&v.name).exists() {
            return Err(ApiError::conflict(format!("volume '{v}' exists already")));
        }
        let scratch = Scratch::new(meta::scratch_path(&dir, &v.name, "upload"));
        let received = receive(&scratch.0, body).await?;
        let storage = self.clone();
        let info = blocking(move || {
            let format = check_upload(&scratch.0, format)?;
            image::replace(&scratch.keep(), &dir.join(&v.name))?;
            storage.record(&dir, &v, format)?;
            drop(claim);
            storage.volume_info(&v)
        })
        .await?;
        let mut answer = (StatusCode::CREATED, axum::Json(info)).into_response();
        answer
            .headers_mut()
            .insert("x-vireo-received-bytes", HeaderValue::from(received));
        Ok(answer)
    }

    /// Streams volume `v`: the stored file, or with `raw` the guest's view.
    pub async fn download(&self, v: VolumeRef, raw: bool) -> Result<Response, ApiError> {
        let storage = self.clone();
        let (reader, len, format) = blocking(move || storage.open_download(&v, raw)).await?;
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        tokio::task::spawn_blocking(move || pump(reader, tx));
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut response = Response::new(Body::from_stream(stream));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        headers.insert("x-vireo-format", HeaderValue::from_static(format.as_str()));
        Ok(response)
    }

    fn open_download(
        &self,
        v: &VolumeRef,
        raw: bool,
    ) -> Result<(Source, u64, VolumeFormat), ApiError> {
        let dir = self.existing(v)?;
        let m = meta_of(&dir, &v.name)?;
        let path = dir.join(&v.name);
        // The shared lock: no VM writes it while it is read.
        let disk = image::open(&path, m.format, false, &dir)?;
        if raw {
            let len = disk.size();
            return Ok((Source::Disk(disk, 0), len, VolumeFormat::Raw));
        }
        let (_, backing) = image::virtual_size(&path, m.format)?;
        if let Some(b) = backing {
            return Err(ApiError::conflict(format!(
                "'{v}' rests on '{b}' (a snapshot or a template): download it with ?format=raw"
            )));
        }
        let file = std::fs::File::open(&path)
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
        let len = file.metadata().map_or(0, |m| m.len());
        Ok((Source::File { file, _lock: disk }, len, m.format))
    }
}

/// Writes the request body to `path`; returns its length.
async fn receive(path: &std::path::Path, body: Body) -> Result<u64, ApiError> {
    let fail = |e: std::io::Error| ApiError::internal(format!("{}: {e}", path.display()));
    let mut file = tokio::fs::File::create_new(path).await.map_err(fail)?;
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("the upload broke off: {e}")))?;
        file.write_all(&chunk).await.map_err(fail)?;
        received += chunk.len() as u64;
    }
    file.sync_all().await.map_err(fail)?;
    Ok(received)
}

/// The uploaded image's format, after checking it opens as that format
/// and names no backing file.
fn check_upload(
    path: &std::path::Path,
    format: Option<VolumeFormat>,
) -> Result<VolumeFormat, ApiError> {
    let sniffed = sniff_format(path).map_err(|e| ApiError::internal(e.to_string()))?;
    let format = format.unwrap_or(sniffed);
    if format == VolumeFormat::Raw && sniffed == VolumeFormat::Qcow2 {
        return Err(ApiError::bad_request(
            "the upload is a qcow2 image: upload it with format=qcow2 (a VM would be refused it as raw)",
        ));
    }
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    if len == 0 || (!len.is_multiple_of(512) && format == VolumeFormat::Raw) {
        return Err(ApiError::bad_request(format!(
            "a raw upload must be a positive multiple of 512 bytes, not {len}"
        )));
    }
    if format == VolumeFormat::Qcow2 {
        let (_, backing) = image::virtual_size(path, format)
            .map_err(|e| ApiError::bad_request(format!("not a valid qcow2 image: {}", e.1)))?;
        if let Some(b) = backing {
            return Err(ApiError::bad_request(format!(
                "the uploaded image names a backing file ('{b}'): upload a standalone image"
            )));
        }
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        image::open(path, format, false, dir)
            .map_err(|e| ApiError::bad_request(format!("not a valid qcow2 image: {}", e.1)))?;
    }
    Ok(format)
}

/// What a download reads: the file (its lock held by the disk handle),
/// or the guest's view through the disk code from an offset.
enum Source {
    File {
        file: std::fs::File,
        /// Holds the image's shared lock while the file is read.
        _lock: Box<dyn vireo_vmm::devices::virtio::block::disk::DiskBackend>,
    },
    Disk(
        Box<dyn vireo_vmm::devices::virtio::block::disk::DiskBackend>,
        u64,
    ),
}

impl Source {
    fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; CHUNK];
        match self {
            Source::File { file, .. } => {
                let n = file.read(&mut buf)?;
                buf.truncate(n);
                Ok((n > 0).then_some(buf))
            }
            Source::Disk(d, at) => {
                let n = (d.size() - *at).min(CHUNK as u64) as usize;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                d.read_at(&mut buf, *at)?;
                *at += n as u64;
                Ok(Some(buf))
            }
        }
    }
}

/// Feeds the response body until the end, an error, or the client leaves.
fn pump(mut source: Source, tx: mpsc::Sender<Result<Bytes, std::io::Error>>) {
    loop {
        let item = match source.next_chunk() {
            Ok(Some(buf)) => Ok(Bytes::from(buf)),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}
