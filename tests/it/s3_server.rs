//! A real S3-compatible server inside the test process: `s3s-fs` (objects as files in a
//! temporary directory) behind `s3s`'s protocol layer, with signature checking, served
//! by hyper on a loopback port from its own thread and runtime, so it serves async tests
//! and CLI child processes alike.
//!
//! Three additions around s3s-fs: multipart uploads are tracked so ListMultipartUploads
//! works (s3s-fs lacks it); keys too long for s3s-fs (it names files after the
//! base64 of the whole key, which overflows a file name past about 180 bytes) are stored
//! under a short alias and listed under their own name; and a front service injects
//! faults chosen by the test —
//! failed or dropped UploadPart requests, any request answered `500 InternalError` or
//! `503 SlowDown` or dropped, and a CompleteMultipartUpload answered `200 OK` with an
//! error in the body, as S3 may do.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::dto::*;
use s3s::{Body, S3Request, S3Response, S3Result, S3};
use stowage::backend::s3::{S3Settings, StaticCredentials};
use tempfile::TempDir;

pub const ACCESS_KEY: &str = "stowage-test-access";
pub const SECRET_KEY: &str = "stowage-test-secret-key";
pub const REGION: &str = "us-east-1";
/// Smallest part S3 (and s3s-fs) accept for all but the last part.
pub const PART_SIZE: usize = 5 << 20;

/// What the front service does to one kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// `500 InternalError`: transient, the client retries.
    ServerError,
    /// `503 SlowDown`: throttling, the client backs off and retries.
    SlowDown,
    /// `403 AccessDenied`: permanent.
    Denied,
    /// The connection is closed without an answer.
    Drop,
}

#[derive(Debug, Default)]
struct FaultState {
    /// UploadPart requests let through before failures start.
    part_skip: u64,
    /// UploadPart requests failed from then on (`u64::MAX`: all).
    part_failures: u64,
    part_kind: Option<FailKind>,
    /// CompleteMultipartUpload requests answered 200 with an error body.
    hidden_complete_errors: u64,
    /// Requests of any kind let through before failures start.
    request_skip: u64,
    /// Requests of any kind failed from then on.
    request_failures: u64,
    request_kind: Option<FailKind>,
    /// Requests seen, in all and by kind.
    requests: u64,
    upload_parts: u64,
    completes: u64,
    puts: u64,
    /// Time every answer waits before it starts, as a network's round trip would.
    answer_delay: Duration,
}

#[derive(Debug, Clone)]
struct Upload {
    bucket: String,
    key: String,
    initiated: SystemTime,
}

type Uploads = Arc<Mutex<BTreeMap<String, Upload>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running server; dropping it stops it.
pub struct S3Server {
    port: u16,
    root: TempDir,
    faults: Arc<Mutex<FaultState>>,
    uploads: Uploads,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl S3Server {
    /// Starts a server on a free loopback port, with no bucket.
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().expect("tempdir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs");
        let uploads = Uploads::default();
        let tracked = Tracked {
            fs,
            uploads: Arc::clone(&uploads),
            aliases: Arc::default(),
        };
        let mut builder = s3s::service::S3ServiceBuilder::new(tracked);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let faults = Arc::new(Mutex::new(FaultState::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let front_faults = Arc::clone(&faults);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let accept = async {
                    loop {
                        let Ok((socket, _)) = listener.accept().await else {
                            continue;
                        };
                        let (service, faults) = (service.clone(), Arc::clone(&front_faults));
                        tokio::spawn(async move {
                            let front = hyper::service::service_fn(move |request| {
                                front(service.clone(), Arc::clone(&faults), request)
                            });
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(socket), front)
                                    .await;
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        S3Server {
            port,
            root,
            faults,
            uploads,
            stop: Some(stop),
        }
    }

    /// Starts a server with one bucket.
    pub fn with_bucket(bucket: &str) -> S3Server {
        let server = S3Server::start();
        server.create_bucket(bucket);
        server
    }

    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir(self.root.path().join(bucket)).expect("create bucket directory");
    }

    pub fn bucket_exists(&self, bucket: &str) -> bool {
        self.root.path().join(bucket).is_dir()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Settings reaching this server, with small retry delays.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint()),
            region: Some(REGION.to_string()),
            path_style: true,
            credentials: Some(StaticCredentials {
                access_key_id: ACCESS_KEY.to_string(),
                secret_access_key: SECRET_KEY.to_string(),
                session_token: None,
            }),
            part_size: PART_SIZE,
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            ..S3Settings::default()
        }
    }

    /// Environment for a `stowage` child process using this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("STOWAGE_S3_ENDPOINT", self.endpoint()),
            ("STOWAGE_S3_PATH_STYLE", "true".to_string()),
            // Keep the child away from the machine's own AWS configuration.
            ("AWS_CONFIG_FILE", "/nonexistent".to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// From now on, UploadPart requests after the next `skip` fail as `kind`, `count`
    /// times (`u64::MAX`: always).
    pub fn fail_upload_parts(&self, skip: u64, count: u64, kind: FailKind) {
        let mut faults = lock(&self.faults);
        faults.part_skip = skip;
        faults.part_failures = count;
        faults.part_kind = Some(kind);
    }

    /// From now on, requests of any kind after the next `skip` fail as `kind`, `count`
    /// times; `count` 0 lets every request through again.
    pub fn fail_requests(&self, skip: u64, count: u64, kind: FailKind) {
        let mut faults = lock(&self.faults);
        faults.request_skip = skip;
        faults.request_failures = count;
        faults.request_kind = Some(kind);
    }

    /// From now on every answer starts `delay` after its request arrived, as over a
    /// network with that round trip (benchmarks of requests in flight).
    pub fn delay_answers(&self, delay: Duration) {
        lock(&self.faults).answer_delay = delay;
    }

    /// Requests of any kind seen so far, failed ones included.
    pub fn requests(&self) -> u64 {
        lock(&self.faults).requests
    }

    /// The next `count` CompleteMultipartUpload requests are answered `200 OK` with an
    /// `InternalError` in the body, without completing anything.
    pub fn hide_errors_in_completes(&self, count: u64) {
        lock(&self.faults).hidden_complete_errors = count;
    }

    /// UploadPart, CompleteMultipartUpload and PutObject requests seen so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let faults = lock(&self.faults);
        (faults.upload_parts, faults.completes, faults.puts)
    }

    /// Multipart uploads neither completed nor aborted: (bucket, key) pairs.
    pub fn open_uploads(&self) -> Vec<(String, String)> {
        lock(&self.uploads)
            .values()
            .map(|u| (u.bucket.clone(), u.key.clone()))
            .collect()
    }

    /// Makes every open upload look `age` older, as if started that long ago.
    pub fn age_uploads(&self, age: Duration) {
        for upload in lock(&self.uploads).values_mut() {
            upload.initiated -= age;
        }
    }

    /// Object keys stored in `bucket` (files of s3s-fs), sorted.
    pub fn stored_keys(&self, bucket: &str) -> Vec<String> {
        let base = self.root.path().join(bucket);
        let mut keys = Vec::new();
        let mut pending = vec![base.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("read bucket").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if let Ok(relative) = path.strip_prefix(&base) {
                    let name = relative.to_string_lossy().into_owned();
                    // s3s-fs keeps its metadata beside objects in dot-files.
                    if !name.split('/').any(|part| part.starts_with('.')) {
                        keys.push(name);
                    }
                }
            }
        }
        keys.sort();
        keys
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type FrontError = Box<dyn std::error::Error + Send + Sync>;

fn xml_error(status: StatusCode, code: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test server</Message><RequestId>test</RequestId></Error>"
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

/// The fault-injecting front: decides, then answers itself or passes to s3s.
async fn front(
    service: s3s::service::S3Service,
    faults: Arc<Mutex<FaultState>>,
    request: Request<Incoming>,
) -> Result<Response<Body>, FrontError> {
    let query = request.uri().query().unwrap_or("").to_string();
    let is_part = request.method() == hyper::Method::PUT
        && query.contains("partNumber=")
        && query.contains("uploadId=");
    let is_complete = request.method() == hyper::Method::POST && query.contains("uploadId=");
    let answer_delay = lock(&faults).answer_delay;
    if !answer_delay.is_zero() {
        tokio::time::sleep(answer_delay).await;
    }
    let verdict = {
        let mut state = lock(&faults);
        state.requests += 1;
        let any_request = if state.request_skip > 0 {
            state.request_skip -= 1;
            None
        } else if state.request_failures > 0 {
            state.request_failures -= 1;
            state.request_kind
        } else {
            None
        };
        if any_request.is_some() {
            any_request
        } else if is_part {
            state.upload_parts += 1;
            if state.part_skip > 0 {
                state.part_skip -= 1;
                None
            } else if state.part_failures > 0 {
                state.part_failures = state.part_failures.saturating_sub(1);
                state.part_kind
            } else {
                None
            }
        } else {
            if is_complete {
                state.completes += 1;
                if state.hidden_complete_errors > 0 {
                    state.hidden_complete_errors -= 1;
                    return Ok(xml_error(StatusCode::OK, "InternalError"));
                }
            } else if request.method() == hyper::Method::PUT {
                state.puts += 1;
            }
            None
        }
    };
    match verdict {
        Some(FailKind::ServerError) => Ok(xml_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
        )),
        Some(FailKind::SlowDown) => Ok(xml_error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown")),
        Some(FailKind::Denied) => Ok(xml_error(StatusCode::FORBIDDEN, "AccessDenied")),
        Some(FailKind::Drop) => Err("connection dropped by the test server".into()),
        None => service
            .call(request.map(Body::from))
            .await
            .map_err(|e| -> FrontError { e.into() }),
    }
}

/// s3s-fs plus the multipart bookkeeping ListMultipartUploads needs, and aliases of
/// long keys.
struct Tracked {
    fs: s3s_fs::FileSystem,
    uploads: Uploads,
    /// Alias → (bucket, key) of every long key ever written.
    aliases: Arc<Mutex<BTreeMap<String, (String, String)>>>,
}

/// Keys longer than this are stored under an alias.
const LONGEST_STORED_KEY: usize = 150;
/// First component of every alias.
const ALIAS_DIR: &str = "long-keys";

impl Tracked {
    /// The key s3s-fs stores `key` under.
    fn stored_key(&self, bucket: &str, key: &str) -> String {
        if key.len() <= LONGEST_STORED_KEY {
            return key.to_string();
        }
        let alias = format!(
            "{ALIAS_DIR}/{}",
            &blake3::hash(format!("{bucket}/{key}").as_bytes()).to_hex()[..32]
        );
        lock(&self.aliases).insert(alias.clone(), (bucket.to_string(), key.to_string()));
        alias
    }
}

#[async_trait::async_trait]
impl S3 for Tracked {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        req.input.key = self.stored_key(&req.input.bucket, &req.input.key);
        self.fs.put_object(req).await
    }

    async fn get_object(
        &self,
        mut req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        req.input.key = self.stored_key(&req.input.bucket, &req.input.key);
        self.fs.get_object(req).await
    }

    async fn head_object(
        &self,
        mut req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        req.input.key = self.stored_key(&req.input.bucket, &req.input.key);
        self.fs.head_object(req).await
    }

    async fn delete_object(
        &self,
        mut req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        req.input.key = self.stored_key(&req.input.bucket, &req.input.key);
        self.fs.delete_object(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let bucket = req.input.bucket.clone();
        let prefix = req.input.prefix.clone().unwrap_or_default();
        let alias_request = req.clone().map_input(|input| ListObjectsV2Input {
            bucket: input.bucket,
            prefix: Some(format!("{ALIAS_DIR}/")),
            ..ListObjectsV2Input::default()
        });
        let mut response = self.fs.list_objects_v2(req).await?;
        let output = &mut response.output;
        let mut contents = output.contents.take().unwrap_or_default();
        contents.retain(|o| !o.key.as_deref().unwrap_or("").starts_with(ALIAS_DIR));
        // Long keys show, under their own name, in the last page.
        if output.is_truncated != Some(true) {
            let stored = self.fs.list_objects_v2(alias_request).await?;
            let stored = stored.output.contents.unwrap_or_default();
            let aliases = lock(&self.aliases).clone();
            for mut object in stored {
                let alias = object.key.clone().unwrap_or_default();
                if let Some((owner, key)) = aliases.get(&alias) {
                    if *owner == bucket && key.starts_with(&prefix) {
                        object.key = Some(key.clone());
                        contents.push(object);
                    }
                }
            }
            contents.sort_by(|a, b| a.key.cmp(&b.key));
        }
        output.key_count = Some(contents.len() as i32);
        output.contents = Some(contents);
        Ok(response)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let response = self.fs.create_multipart_upload(req).await?;
        if let Some(id) = &response.output.upload_id {
            let upload = Upload {
                bucket,
                key,
                initiated: SystemTime::now(),
            };
            lock(&self.uploads).insert(id.clone(), upload);
        }
        Ok(response)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        if !lock(&self.uploads).contains_key(&req.input.upload_id) {
            return Err(s3s::s3_error!(NoSuchUpload));
        }
        self.fs.upload_part(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let id = req.input.upload_id.clone();
        if !lock(&self.uploads).contains_key(&id) {
            return Err(s3s::s3_error!(NoSuchUpload));
        }
        let response = self.fs.complete_multipart_upload(req).await?;
        lock(&self.uploads).remove(&id);
        Ok(response)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let id = req.input.upload_id.clone();
        if lock(&self.uploads).remove(&id).is_none() {
            return Err(s3s::s3_error!(NoSuchUpload));
        }
        self.fs.abort_multipart_upload(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let mut uploads: Vec<MultipartUpload> = lock(&self.uploads)
            .iter()
            .filter(|(_, u)| u.bucket == input.bucket && u.key.starts_with(&prefix))
            .map(|(id, u)| MultipartUpload {
                key: Some(u.key.clone()),
                upload_id: Some(id.clone()),
                initiated: Some(Timestamp::from(u.initiated)),
                ..MultipartUpload::default()
            })
            .collect();
        uploads.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        let output = ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            is_truncated: Some(false),
            uploads: Some(uploads),
            ..ListMultipartUploadsOutput::default()
        };
        Ok(S3Response::new(output))
    }
}
