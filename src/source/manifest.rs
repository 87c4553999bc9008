//! Services and EndpointSlices read from Kubernetes YAML manifests.
//!
//! This is how ipvsd runs without a cluster: for a demo, a test bed, or a node whose Services are
//! fixed. The files are what `kubectl get -o yaml` writes: one object per document, any number of
//! documents per file, or a `kind: List` of them. A path is a file (read whatever its name) or a
//! directory, whose `*.yaml`, `*.yml` and `*.json` files are read in name order; directories are
//! not searched recursively, and names starting with a dot (editor swap and lock files) are left
//! out.
//!
//! A bad object is reported with its file and namespace/name and left out; every other object
//! still applies, so one typo does not take down a node's Services.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_yaml_ng::Value;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::{Changes, ContentLog, ObjectKey, Objects, Slice, Snapshot, Source};

/// How often the files are checked for changes: quick enough that an edit feels immediate,
/// cheap enough for the handful of small files manifests are.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A problem with a manifest file, a document in it, or an object. Cloned cheaply: a file's
/// problems are kept with its parsed content until the file changes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManifestError {
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<io::Error>,
    },
    /// A document is not valid YAML.
    #[error("{}: document {document}: {source}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Its number in the file, from 1.
        document: usize,
        /// The line of the file it starts on, from 1.
        line: usize,
        /// The parser's complaint, with the line and column in the file.
        #[source]
        source: YamlError,
    },
    /// A document is YAML but not a Kubernetes object.
    #[error("{}: document {document}: {problem}", path.display())]
    Document {
        /// The file.
        path: PathBuf,
        /// Its number in the file, from 1.
        document: usize,
        /// What is wrong.
        problem: String,
    },
    /// An object does not decode as its kind.
    #[error("{}: {kind} {object}: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// `Service` or `EndpointSlice`.
        kind: String,
        /// `namespace/name`.
        object: String,
        /// The field and the problem.
        #[source]
        source: Arc<serde_path_to_error::Error<serde_yaml_ng::Error>>,
    },
    /// An object decodes but holds a value ipvsd cannot use.
    #[error("{}: {kind} {object}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `Service` or `EndpointSlice`.
        kind: String,
        /// `namespace/name`.
        object: String,
        /// The field and the problem.
        problem: String,
    },
}

/// The YAML parser's complaint about one document, with the line numbers of the file.
///
/// Each document is parsed alone, so the parser counts lines from the document's start; the
/// lines before it are added when the message is shown. The parser never sees them, which keeps
/// parsing a file linear in its size.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", shift_lines(&self.error.to_string(), self.lines_before, self.error.location()))]
pub struct YamlError {
    error: Arc<serde_yaml_ng::Error>,
    /// The lines of the file before the text the parser was given.
    lines_before: usize,
}

impl YamlError {
    /// The line of the file the problem is on, from 1, if the parser says.
    pub fn line(&self) -> Option<usize> {
        self.error.location().map(|l| l.line() + self.lines_before)
    }

    /// The column the problem is at, from 1, if the parser says.
    pub fn column(&self) -> Option<usize> {
        self.error.location().map(|l| l.column())
    }
}

/// Adds `lines` to the line numbers of the YAML parser's `message`, whose problem is at
/// `location`: the problem's mark (`at line L column C`) and the mark of what the parser was
/// in, which follows it (`, while parsing a block mapping at line L column C`). Nothing else is
/// touched, so text of the document quoted in the message stays as it is.
fn shift_lines(message: &str, lines: usize, location: Option<serde_yaml_ng::Location>) -> String {
    let Some(location) = location.filter(|_| lines > 0) else {
        return message.to_string();
    };
    let mark = format!(" at line {} column {}", location.line(), location.column());
    let found = message
        .rmatch_indices(&mark)
        .map(|(i, _)| i)
        .find(|i| !message[i + mark.len()..].starts_with(|c: char| c.is_ascii_digit()));
    let Some(at) = found else {
        return message.to_string();
    };
    let rest = &message[at + mark.len()..];
    let mut shifted = format!(
        "{} at line {} column {}",
        &message[..at],
        location.line() + lines,
        location.column()
    );
    // The context's mark ends the message: `, <context> at line L column C`.
    let context = rest.rfind(" at line ").and_then(|i| {
        let (line, column) = rest[i + " at line ".len()..].split_once(" column ")?;
        let line = decimal(line)?;
        let column = decimal(column)?;
        rest.starts_with(", ").then_some((i, line, column))
    });
    match context {
        Some((i, line, column)) => {
            shifted.push_str(&rest[..i]);
            shifted.push_str(&format!(" at line {} column {column}", line + lines));
        }
        None => shifted.push_str(rest),
    }
    shifted
}

/// A number written in decimal digits only.
fn decimal(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl ManifestError {
    /// The file the problem is in.
    pub fn path(&self) -> &Path {
        match self {
            ManifestError::Read { path, .. }
            | ManifestError::Yaml { path, .. }
            | ManifestError::Document { path, .. }
            | ManifestError::Decode { path, .. }
            | ManifestError::Invalid { path, .. } => path,
        }
    }

    /// Logs the problem with its file and object as fields.
    fn log(&self) {
        let file = self.path().display();
        match self {
            ManifestError::Read { source, .. } => {
                tracing::warn!(%file, error = %source, "manifest not readable")
            }
            ManifestError::Yaml {
                document,
                line,
                source,
                ..
            } => {
                tracing::warn!(%file, document, line, error = %source, "manifest document is not YAML, skipped")
            }
            ManifestError::Document {
                document, problem, ..
            } => tracing::warn!(%file, document, problem, "manifest document skipped"),
            ManifestError::Decode {
                kind,
                object,
                source,
                ..
            } => tracing::warn!(%file, kind, object, problem = %source, "manifest object skipped"),
            ManifestError::Invalid {
                kind,
                object,
                problem,
                ..
            } => tracing::warn!(%file, kind, object, problem, "manifest object skipped"),
        }
    }
}

/// What [`load`] found: the good objects, and a report of each bad one.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// The objects that are valid.
    pub snapshot: Snapshot,
    /// The problems, in file order.
    pub errors: Vec<ManifestError>,
}

/// Reads the Services and EndpointSlices of `paths`. It never fails as a whole: whatever cannot
/// be read or used is in [`LoadResult::errors`] and the rest is in the snapshot.
pub fn load(paths: &[PathBuf]) -> LoadResult {
    let combined = ParseCache::default().load(read_files(paths));
    LoadResult {
        snapshot: Snapshot {
            services: combined
                .services
                .iter()
                .map(|s| Service::clone(s))
                .collect(),
            endpoint_slices: combined
                .endpoint_slices
                .iter()
                .map(|s| EndpointSlice::from(Slice::clone(s)))
                .collect(),
        },
        errors: combined.errors,
    }
}

/// The objects of every file in file order, shared with the parse cache, and the problems.
#[derive(Debug, Default)]
struct Combined {
    services: Vec<Arc<Service>>,
    endpoint_slices: Vec<Arc<Slice>>,
    errors: Vec<ManifestError>,
}

impl Combined {
    /// The objects by key (each key is there once: [`combine`] left out redefinitions).
    fn objects(&self) -> Objects {
        Objects {
            services: self
                .services
                .iter()
                .map(|s| (ObjectKey::of(&s.metadata), s.clone()))
                .collect(),
            endpoint_slices: self
                .endpoint_slices
                .iter()
                .map(|s| (ObjectKey::of(&s.metadata), s.clone()))
                .collect(),
        }
    }
}

/// A manifest file's content, or why it could not be read.
struct FileContent {
    path: PathBuf,
    content: Result<String, io::Error>,
}

/// The files `paths` name, read, in order.
fn read_files(paths: &[PathBuf]) -> Vec<FileContent> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).and_then(|dir| {
                dir.map(|entry| entry.map(|e| e.path()))
                    .collect::<Result<Vec<_>, _>>()
            });
            match entries {
                Ok(mut entries) => {
                    entries.retain(|p| is_manifest_name(p) && p.is_file());
                    entries.sort();
                    files.extend(entries.into_iter().map(|p| FileContent {
                        content: std::fs::read_to_string(&p),
                        path: p,
                    }));
                }
                Err(e) => files.push(FileContent {
                    path: path.clone(),
                    content: Err(e),
                }),
            }
        } else {
            files.push(FileContent {
                path: path.clone(),
                content: std::fs::read_to_string(path),
            });
        }
    }
    files
}

/// Whether a directory entry is a manifest: `.yaml`, `.yml` or `.json`, and not hidden.
fn is_manifest_name(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let extension = path.extension().and_then(|e| e.to_str());
    !hidden && matches!(extension, Some("yaml" | "yml" | "json"))
}

/// A hash of the file list and every file's content: it changes whenever a file is added,
/// removed or edited, even by an edit that keeps the length and the modification time.
fn fingerprint(files: &[FileContent]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.path.hash(&mut hasher);
        match &file.content {
            Ok(text) => text.hash(&mut hasher),
            Err(e) => e.kind().hash(&mut hasher),
        }
    }
    hasher.finish()
}

/// What one file holds: its documents, in file order. It depends on the file's content alone, so
/// it is kept until the file changes.
#[derive(Default)]
struct ParsedFile {
    documents: Vec<Arc<ParsedDocument>>,
}

/// What one document holds, in order: its objects (several for a `kind: List`) and its problems.
/// It depends on the document's text and, through the document number and line that its
/// problems name, on its place in the file: when an edit elsewhere in the file moves it, it is
/// relabelled, not parsed again.
#[derive(Default)]
struct ParsedDocument {
    key: DocumentKey,
    entries: Vec<Entry>,
}

/// What a document's parse depends on besides its place: the hash of its text, and whether it
/// starts after the file's first line (see [`ParsedDocument::parse`]).
type DocumentKey = (u64, bool);

#[derive(Clone)]
enum Entry {
    Service(Box<Named<Service>>),
    /// Kept as [`Slice`]: what the model reads of it.
    EndpointSlice(Box<Named<Slice>>),
    Problem(ManifestError),
}

/// An object with what names it in a report of a duplicate.
#[derive(Clone)]
struct Named<T> {
    /// `namespace/name`.
    key: String,
    /// Shared by every load until its document changes, so an unchanged object is not copied
    /// and is recognised as unchanged without comparing it.
    object: Arc<T>,
}

/// Each file's [`ParsedFile`], by path, with the hash of the content it was parsed from: after
/// an edit only the edited files are parsed again, and of those only the documents whose text
/// changed, which is what keeps a change quick with thousands of files or documents.
#[derive(Default)]
struct ParseCache {
    files: BTreeMap<PathBuf, (u64, Arc<ParsedFile>)>,
}

impl ParseCache {
    /// Parses what changed and combines every file, in order, into one result. A file that
    /// went away is forgotten.
    fn load(&mut self, files: Vec<FileContent>) -> Combined {
        let mut parsed = Vec::with_capacity(files.len());
        let mut kept = BTreeMap::new();
        for file in files {
            match file.content {
                Ok(text) => {
                    let hash = content_hash(&text);
                    let p = match self.files.remove(&file.path) {
                        Some((h, p)) if h == hash => p,
                        before => Arc::new(parse_file(
                            &file.path,
                            &text,
                            before.as_ref().map(|(_, p)| &**p),
                        )),
                    };
                    kept.insert(file.path.clone(), (hash, Arc::clone(&p)));
                    parsed.push((file.path, Ok(p)));
                }
                Err(source) => parsed.push((file.path, Err(source))),
            }
        }
        self.files = kept;
        combine(parsed)
    }
}

fn content_hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// Puts the files' objects together in file order. An object defined again is reported and
/// left out, so the outcome does not depend on which file changed last.
fn combine(files: Vec<(PathBuf, Result<Arc<ParsedFile>, io::Error>)>) -> Combined {
    let mut result = Combined::default();
    let mut seen: BTreeMap<(&'static str, String), PathBuf> = BTreeMap::new();
    let mut first =
        |kind: &'static str, key: &str, path: &Path, errors: &mut Vec<ManifestError>| match seen
            .get(&(kind, key.to_owned()))
        {
            Some(first) => {
                errors.push(ManifestError::Invalid {
                    path: path.to_path_buf(),
                    kind: kind.to_owned(),
                    object: key.to_owned(),
                    problem: format!("defined again (first in {}), ignored", first.display()),
                });
                false
            }
            None => {
                seen.insert((kind, key.to_owned()), path.to_path_buf());
                true
            }
        };
    for (path, file) in files {
        let file = match file {
            Ok(f) => f,
            Err(source) => {
                result.errors.push(ManifestError::Read {
                    path,
                    source: Arc::new(source),
                });
                continue;
            }
        };
        for entry in file.documents.iter().flat_map(|d| &d.entries) {
            match entry {
                Entry::Service(s) => {
                    if first("Service", &s.key, &path, &mut result.errors) {
                        result.services.push(s.object.clone());
                    }
                }
                Entry::EndpointSlice(s) => {
                    if first("EndpointSlice", &s.key, &path, &mut result.errors) {
                        result.endpoint_slices.push(s.object.clone());
                    }
                }
                Entry::Problem(e) => result.errors.push(e.clone()),
            }
        }
    }
    result
}

/// Parses a file's documents, taking those whose text has not changed from `before`, the file's
/// previous content.
fn parse_file(path: &Path, text: &str, before: Option<&ParsedFile>) -> ParsedFile {
    // Documents of the same text (copies of one object, say) are told apart by their place.
    let mut known: HashMap<DocumentKey, Vec<&Arc<ParsedDocument>>> = HashMap::new();
    for document in before.into_iter().flat_map(|f| &f.documents) {
        known.entry(document.key).or_default().push(document);
    }
    let documents = split_documents(text)
        .into_iter()
        .enumerate()
        .map(|(index, (line, text))| {
            let number = index + 1;
            let key = (content_hash(&text), line > 1);
            let same = known.get(&key).map(Vec::as_slice).unwrap_or_default();
            match same.iter().find(|d| d.is_at(number, line)) {
                Some(document) => Arc::clone(document),
                None => match same.first() {
                    Some(document) => Arc::new(document.moved_to(number, line)),
                    None => Arc::new(ParsedDocument::parse(path, key, number, line, text)),
                },
            }
        })
        .collect();
    ParsedFile { documents }
}

/// Splits a YAML stream at its document markers: a line that is `---` (maybe followed by
/// content) or `...`. Each document is then parsed alone, so a syntax error loses that document
/// only and not the rest of the file. Returns each non-empty document with the line it starts on
/// (its marker's line; the marker's own line stays in it, empty, so the parser's line numbers
/// count from there).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "..." || line.starts_with("... ");
        if is_start || is_end {
            let body = std::mem::take(&mut current);
            if !body.trim().is_empty() {
                documents.push((start, body));
            }
            start = i + 1;
            if is_start {
                // Content after the marker (`--- {...}`) belongs to the new document.
                current.push_str(line[3..].trim_start());
                current.push('\n');
            } else {
                start = i + 2;
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.trim().is_empty() {
        documents.push((start, current));
    }
    documents
}

impl ParsedDocument {
    /// Parses document `number` of the file at `path`, which starts on `line`.
    fn parse(
        path: &Path,
        key: DocumentKey,
        number: usize,
        line: usize,
        document: String,
    ) -> ParsedDocument {
        let mut parsed = ParsedDocument {
            key,
            entries: Vec::new(),
        };
        // The parser gets the document alone, and the lines before it are added to the
        // lines of its errors: padding the document with them instead would make the parser
        // read them again for every document, quadratic in the number of documents. The
        // document's first line holds content only after a `...` or as `--- {...}`; one
        // blank line goes in front of it then, as the parser gives no line number for a
        // problem at the very first character.
        let (text, lines_before) = if line > 1 && !document.starts_with('\n') {
            (format!("\n{document}"), line - 2)
        } else {
            (document, line - 1)
        };
        let value: Value = match serde_yaml_ng::from_str(&text) {
            Ok(v) => v,
            Err(error) => {
                parsed.problem(ManifestError::Yaml {
                    path: path.to_path_buf(),
                    document: number,
                    line,
                    source: YamlError {
                        error: Arc::new(error),
                        lines_before,
                    },
                });
                return parsed;
            }
        };
        if !value.is_null() {
            // Null is an empty document, as between `---` lines.
            parsed.object(path, number, value);
        }
        // Mostly one entry: keep no room for more, as there are as many of these as documents.
        parsed.entries.shrink_to_fit();
        parsed
    }

    /// Whether the problems name document `number` starting on `line`, if they name any.
    fn is_at(&self, number: usize, line: usize) -> bool {
        self.entries.iter().all(|entry| match entry {
            Entry::Problem(ManifestError::Yaml {
                document, line: l, ..
            }) => (*document, *l) == (number, line),
            Entry::Problem(ManifestError::Document { document, .. }) => *document == number,
            _ => true,
        })
    }

    /// The same document as document `number`, starting on `line`.
    fn moved_to(&self, number: usize, line: usize) -> ParsedDocument {
        let entries = self
            .entries
            .iter()
            .map(|entry| match entry {
                Entry::Problem(ManifestError::Yaml {
                    path,
                    line: was,
                    source,
                    ..
                }) => Entry::Problem(ManifestError::Yaml {
                    path: path.clone(),
                    document: number,
                    line,
                    source: YamlError {
                        error: Arc::clone(&source.error),
                        // Where the document starts on the file's first line, it does in both
                        // places (see DocumentKey), so this is never below 0.
                        lines_before: source.lines_before + line - was,
                    },
                }),
                Entry::Problem(ManifestError::Document { path, problem, .. }) => {
                    Entry::Problem(ManifestError::Document {
                        path: path.clone(),
                        document: number,
                        problem: problem.clone(),
                    })
                }
                other => other.clone(),
            })
            .collect();
        ParsedDocument {
            key: self.key,
            entries,
        }
    }

    /// One document or list item.
    fn object(&mut self, path: &Path, document: usize, value: Value) {
        let kind = value.get("kind").and_then(Value::as_str).map(str::to_owned);
        let Some(kind) = kind else {
            self.problem(ManifestError::Document {
                path: path.to_path_buf(),
                document,
                problem: "no kind: not a Kubernetes object".to_string(),
            });
            return;
        };
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if kind == "List" || kind.ends_with("List") {
            match value.get("items") {
                Some(Value::Sequence(items)) => {
                    for item in items.clone() {
                        self.object(path, document, item);
                    }
                }
                Some(Value::Null) | None => {}
                Some(_) => self.problem(ManifestError::Document {
                    path: path.to_path_buf(),
                    document,
                    problem: format!("{kind}: items is not a list"),
                }),
            }
            return;
        }
        let object = ObjectName::of(&value);
        let expected = match kind.as_str() {
            "Service" => "v1",
            "EndpointSlice" => "discovery.k8s.io/v1",
            _ => {
                tracing::debug!(file = %path.display(), kind, object = %object, "manifest object of another kind ignored");
                return;
            }
        };
        let invalid = |problem: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            kind: kind.clone(),
            object: object.to_string(),
            problem,
        };
        if api_version.is_empty() {
            self.problem(invalid(format!("apiVersion is required ({expected})")));
            return;
        }
        if api_version != expected {
            self.problem(invalid(format!(
                "apiVersion {api_version:?} is not supported, only {expected}"
            )));
            return;
        }
        let Some(name) = object.name.clone() else {
            self.problem(invalid("metadata.name is required".to_string()));
            return;
        };
        let decode_error = |source| ManifestError::Decode {
            path: path.to_path_buf(),
            kind: kind.clone(),
            object: object.to_string(),
            source: Arc::new(source),
        };
        let problems;
        let key = format!("{}/{name}", object.namespace);
        match kind.as_str() {
            "Service" => {
                let mut service: Service = match serde_path_to_error::deserialize(value) {
                    Ok(s) => s,
                    Err(e) => {
                        self.problem(decode_error(e));
                        return;
                    }
                };
                service.metadata.namespace = Some(object.namespace.clone());
                problems = service_problems(&service);
                if problems.is_empty() {
                    self.entries.push(Entry::Service(Box::new(Named {
                        key,
                        object: Arc::new(service),
                    })));
                }
            }
            _ => {
                let mut slice: EndpointSlice = match serde_path_to_error::deserialize(value) {
                    Ok(s) => s,
                    Err(e) => {
                        self.problem(decode_error(e));
                        return;
                    }
                };
                slice.metadata.namespace = Some(object.namespace.clone());
                problems = slice_problems(&slice);
                if problems.is_empty() {
                    self.entries.push(Entry::EndpointSlice(Box::new(Named {
                        key,
                        object: Arc::new(Slice::from(slice)),
                    })));
                }
            }
        }
        for problem in problems {
            self.problem(invalid(problem));
        }
    }

    fn problem(&mut self, error: ManifestError) {
        self.entries.push(Entry::Problem(error));
    }
}

/// An object's namespace and name as read from the raw document, before it is decoded, so that
/// even an object that does not decode is named in its error.
struct ObjectName {
    namespace: String,
    name: Option<String>,
}

impl ObjectName {
    fn of(value: &Value) -> ObjectName {
        let meta = value.get("metadata");
        let field = |f: &str| {
            meta.and_then(|m| m.get(f))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        ObjectName {
            // kubectl apply puts an object without a namespace into "default"; so does ipvsd.
            namespace: field("namespace").unwrap_or_else(|| "default".to_string()),
            name: field("name"),
        }
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.namespace,
            self.name.as_deref().unwrap_or("<unnamed>")
        )
    }
}

fn check_port(problems: &mut Vec<String>, field: String, port: i32) {
    if !(1..=65535).contains(&port) {
        problems.push(format!("{field} {port} out of range"));
    }
}

fn check_ip(problems: &mut Vec<String>, field: String, text: &str) {
    if text.parse::<IpAddr>().is_err() {
        problems.push(format!("{field} {text:?} is not an IP address"));
    }
}

/// What makes a decoded Service unusable, one message per problem.
fn service_problems(service: &Service) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(spec) = &service.spec else {
        problems.push("spec is required".to_string());
        return problems;
    };
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !matches!(
        service_type,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        problems.push(format!(
            "spec.type {service_type:?} is not ClusterIP, NodePort, LoadBalancer or ExternalName"
        ));
    }
    if let Some(ip) = spec.cluster_ip.as_deref() {
        if !ip.is_empty() && ip != "None" {
            check_ip(&mut problems, "spec.clusterIP".to_string(), ip);
        }
    }
    for (i, ip) in spec.cluster_ips.iter().flatten().enumerate() {
        if !(i == 0 && ip == "None") {
            check_ip(&mut problems, format!("spec.clusterIPs[{i}]"), ip);
        }
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        check_ip(&mut problems, format!("spec.externalIPs[{i}]"), ip);
    }
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        check_port(&mut problems, format!("spec.ports[{i}].port"), port.port);
        if let Some(node_port) = port.node_port.filter(|p| *p != 0) {
            check_port(
                &mut problems,
                format!("spec.ports[{i}].nodePort"),
                node_port,
            );
        }
        match &port.target_port {
            Some(IntOrString::Int(target)) => check_port(
                &mut problems,
                format!("spec.ports[{i}].targetPort"),
                *target,
            ),
            Some(IntOrString::String(name)) if name.is_empty() => {
                problems.push(format!("spec.ports[{i}].targetPort is empty"))
            }
            _ => {}
        }
        if let Some(protocol) = port.protocol.as_deref() {
            if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
                problems.push(format!(
                    "spec.ports[{i}].protocol {protocol:?} is not TCP, UDP or SCTP"
                ));
            }
        }
    }
    if let Some(affinity) = spec.session_affinity.as_deref() {
        if !matches!(affinity, "None" | "ClientIP") {
            problems.push(format!(
                "spec.sessionAffinity {affinity:?} is not None or ClientIP"
            ));
        }
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    if let Some(seconds) = timeout {
        if !(1..=86400).contains(&seconds) {
            problems.push(format!(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds {seconds} out of range 1..=86400"
            ));
        }
    }
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for (i, entry) in ingress.into_iter().flatten().enumerate() {
        if let Some(ip) = entry.ip.as_deref() {
            check_ip(
                &mut problems,
                format!("status.loadBalancer.ingress[{i}].ip"),
                ip,
            );
        }
    }
    problems
}

/// What makes a decoded EndpointSlice unusable, one message per problem.
fn slice_problems(slice: &EndpointSlice) -> Vec<String> {
    let mut problems = Vec::new();
    let has_service = slice
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(crate::labels::SERVICE_NAME_LABEL));
    if !has_service {
        problems.push(format!(
            "metadata.labels[{:?}] is required: it names the Service",
            crate::labels::SERVICE_NAME_LABEL
        ));
    }
    let family = match slice.address_type.as_str() {
        "IPv4" => Some(false),
        "IPv6" => Some(true),
        "FQDN" => None,
        other => {
            problems.push(format!("addressType {other:?} is not IPv4, IPv6 or FQDN"));
            None
        }
    };
    for (i, port) in slice.ports.iter().flatten().enumerate() {
        if let Some(number) = port.port {
            check_port(&mut problems, format!("ports[{i}].port"), number);
        }
        if let Some(protocol) = port.protocol.as_deref() {
            if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
                problems.push(format!(
                    "ports[{i}].protocol {protocol:?} is not TCP, UDP or SCTP"
                ));
            }
        }
    }
    for (i, endpoint) in slice.endpoints.iter().flatten().enumerate() {
        if endpoint.addresses.is_empty() {
            problems.push(format!("endpoints[{i}].addresses is empty"));
        }
        let Some(is_v6) = family else {
            continue;
        };
        for (j, text) in endpoint.addresses.iter().enumerate() {
            match text.parse::<IpAddr>() {
                Ok(ip) if ip.is_ipv6() == is_v6 => {}
                Ok(_) => problems.push(format!(
                    "endpoints[{i}].addresses[{j}] {text} is not of addressType {}",
                    slice.address_type
                )),
                Err(_) => problems.push(format!(
                    "endpoints[{i}].addresses[{j}] {text:?} is not an IP address"
                )),
            }
        }
    }
    problems
}

/// A [`Source`] that reads manifest files and reloads them when they change.
///
/// Dropping it stops the polling task.
#[derive(Debug)]
pub struct ManifestSource {
    content: Arc<Mutex<ContentLog>>,
    task: AbortHandle,
}

impl ManifestSource {
    /// Starts polling `paths` every [`POLL_INTERVAL`] on the current tokio runtime. After the
    /// first load and after each change, it stores the new content, records which objects
    /// changed, and bumps `changed`'s generation. The task also ends once nobody listens to
    /// `changed` any more.
    pub fn spawn(paths: Vec<PathBuf>, changed: watch::Sender<u64>) -> ManifestSource {
        let content = Arc::new(Mutex::new(ContentLog::default()));
        let task = tokio::spawn(poll(paths, changed, Arc::clone(&content))).abort_handle();
        ManifestSource { content, task }
    }

    fn content(&self) -> std::sync::MutexGuard<'_, ContentLog> {
        self.content.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ManifestSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Source for ManifestSource {
    fn snapshot(&self) -> Option<Snapshot> {
        self.content().current().map(Objects::to_snapshot)
    }

    fn take_changes(&self, full: bool) -> Option<Changes> {
        self.content().take(full)
    }
}

async fn poll(paths: Vec<PathBuf>, changed: watch::Sender<u64>, content: Arc<Mutex<ContentLog>>) {
    let paths = Arc::new(paths);
    let cache = Arc::new(Mutex::new(ParseCache::default()));
    let mut last: Option<u64> = None;
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = changed.closed() => {
                tracing::debug!("nobody listens to manifest changes any more, stopping");
                return;
            }
        }
        let paths = Arc::clone(&paths);
        let cache = Arc::clone(&cache);
        let previous = last;
        // File reads block; keep them off the runtime's worker threads.
        let outcome = tokio::task::spawn_blocking(move || {
            let files = read_files(&paths);
            let print = fingerprint(&files);
            if previous == Some(print) {
                (print, None)
            } else {
                let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
                (print, Some(cache.load(files)))
            }
        })
        .await;
        let (print, loaded) = match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "reading manifests failed");
                continue;
            }
        };
        last = Some(print);
        let Some(loaded) = loaded else {
            continue;
        };
        for error in &loaded.errors {
            error.log();
        }
        tracing::info!(
            services = loaded.services.len(),
            endpoint_slices = loaded.endpoint_slices.len(),
            errors = loaded.errors.len(),
            "manifests loaded"
        );
        content
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(loaded.objects());
        changed.send_modify(|generation| *generation = generation.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_markers_only() {
        let text = "a: 1\n---\nb: |\n  --- not a marker\n...\n--- {c: 3}\n";
        let docs = split_documents(text);
        let bodies: Vec<&str> = docs.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(
            bodies,
            ["a: 1\n", "\nb: |\n  --- not a marker\n", "{c: 3}\n"]
        );
        assert_eq!(docs.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 2, 6]);
    }

    /// The message of the YAML error `parse_file` reports for `text`.
    fn yaml_error(text: &str) -> String {
        let file = parse_file(Path::new("f.yaml"), text, None);
        let errors: Vec<String> = file
            .documents
            .iter()
            .flat_map(|d| &d.entries)
            .filter_map(|e| match e {
                Entry::Problem(ManifestError::Yaml { source, .. }) => Some(source.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(errors.len(), 1, "{text:?}");
        errors.into_iter().next().unwrap()
    }

    #[test]
    fn yaml_errors_name_the_lines_of_the_file() {
        // Each bad document, after some good ones, gives the message the parser gives when
        // the document is padded with the file's lines before it, as it was parsed before.
        let bad = [
            "metadata:\n  name: [unclosed\n",
            "a: {b: 1\n",
            "a: 1\na: 2\n",
            "a: *nowhere\n",
            "a:\n  b: 1\n c: 2\n",
            "a: \"open\n",
            "a: 1\n\tb: 2\n",
            "- a\nb: 1\n",
            "]\n",
            "a: @b\n",
        ];
        let good = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n";
        for doc in bad {
            for (prefix, marker) in [
                ("", ""),
                ("a: 1\n", "---\n"),
                (good, "---\n"),
                (&format!("{good}---\n{good}"), "---\n"),
                (good, "...\n"),
                (good, "...\n\n"),
            ] {
                let text = format!("{prefix}{marker}{doc}");
                let (line, document) = split_documents(&text).pop().unwrap();
                let padded = "\n".repeat(line - 1) + &document;
                let expected = serde_yaml_ng::from_str::<Value>(&padded)
                    .unwrap_err()
                    .to_string();
                assert_eq!(yaml_error(&text), expected, "{text:?}");
            }
        }
        // `--- content`: the content is on the marker's line.
        let text = format!("{good}--- [unclosed\n");
        assert_eq!(
            yaml_error(&text),
            "did not find expected ',' or ']' at line 6 column 1, while parsing a flow sequence at line 5 column 1"
        );
    }

    #[test]
    fn only_the_marks_of_a_yaml_message_are_shifted() {
        let error = serde_yaml_ng::from_str::<Value>(
            "\"at line 1 column 6\": 1\n\"at line 1 column 6\": 2\n",
        )
        .unwrap_err();
        let shifted = shift_lines(&error.to_string(), 10, error.location());
        assert_eq!(
            shifted,
            error
                .to_string()
                .replace("at line 2 column", "at line 12 column")
        );
        assert!(shifted.contains("\"at line 1 column 6\""), "{shifted}");
        assert_eq!(
            shift_lines("no mark here", 10, error.location()),
            "no mark here"
        );
    }

    #[test]
    fn only_changed_files_are_parsed_again() {
        let dir = tempfile::tempdir().unwrap();
        let service = |name: &str, ip: &str| {
            format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  clusterIP: {ip}\n  ports:\n  - port: 80\n")
        };
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, service("a", "10.96.0.1")).unwrap();
        std::fs::write(&b, service("b", "10.96.0.2")).unwrap();
        let paths = [dir.path().to_path_buf()];
        let mut cache = ParseCache::default();
        let first = cache.load(read_files(&paths));
        assert_eq!(first.services.len(), 2);
        let a_parsed = Arc::clone(&cache.files[&a].1);
        let b_parsed = Arc::clone(&cache.files[&b].1);

        std::fs::write(&b, service("b", "10.96.0.3")).unwrap();
        let second = cache.load(read_files(&paths));
        assert!(
            Arc::ptr_eq(&cache.files[&a].1, &a_parsed),
            "a is not parsed again"
        );
        assert!(!Arc::ptr_eq(&cache.files[&b].1, &b_parsed), "b is");
        let ips: Vec<_> = second
            .services
            .iter()
            .map(|s| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap())
            .collect();
        assert_eq!(ips, ["10.96.0.1", "10.96.0.3"]);

        std::fs::remove_file(&a).unwrap();
        let third = cache.load(read_files(&paths));
        assert_eq!(third.services.len(), 1);
        assert!(!cache.files.contains_key(&a), "a removed file is forgotten");
    }

    #[test]
    fn only_changed_documents_are_parsed_again_and_moved_ones_name_their_new_place() {
        let service = |i: usize, port: u32| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\nspec:\n  clusterIP: 10.96.{}.{}\n  ports:\n  - port: {port}\n",
                i / 250,
                i % 250 + 1
            )
        };
        let text = |edited: bool| {
            (0..1000)
                .map(|i| match i {
                    // One line more: every later document moves down a line.
                    500 if edited => service(i, 81) + "  - port: 82\n",
                    100 | 900 => "just: a map\n".to_string(),
                    800 => "metadata:\n  name: [unclosed\n".to_string(),
                    _ => service(i, 80),
                })
                .collect::<Vec<_>>()
                .join("---\n")
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.yaml");
        let paths = [path.clone()];
        std::fs::write(&path, text(false)).unwrap();
        let mut cache = ParseCache::default();
        cache.load(read_files(&paths));
        let before = cache.files[&path].1.documents.clone();

        std::fs::write(&path, text(true)).unwrap();
        let result = cache.load(read_files(&paths));
        let after = &cache.files[&path].1.documents;
        assert_eq!(after.len(), 1000);
        for (i, (b, a)) in before.iter().zip(after).enumerate() {
            // 501 is parsed again; 801 moved down a line, and its YAML error is relabelled;
            // 901 too, but its problem names no line.
            let parsed_or_relabelled = matches!(i, 500 | 800);
            assert_eq!(
                !Arc::ptr_eq(b, a),
                parsed_or_relabelled,
                "document {}",
                i + 1
            );
        }
        let message = |errors: &[ManifestError]| -> Vec<String> {
            errors.iter().map(ManifestError::to_string).collect()
        };
        let fresh = load(&paths);
        assert_eq!(message(&result.errors), message(&fresh.errors));
        assert_eq!(result.errors.len(), 3, "{:?}", message(&result.errors));
        // Before document 801: 798 Services of 8 lines, one of 9, one map of 1 line, and 800
        // `---` lines (its own included); then `metadata:` and the open flow sequence.
        assert_eq!(798 * 8 + 9 + 1 + 800 + 3, 7197);
        assert!(
            message(&result.errors)[1]
                .contains("document 801: did not find expected ',' or ']' at line 7197 column 1"),
            "{:?}",
            message(&result.errors)
        );
        assert!(
            message(&result.errors)[2].contains("document 901: no kind"),
            "{:?}",
            message(&result.errors)
        );
        let ports = |service: &Service| -> Vec<i32> {
            service
                .spec
                .as_ref()
                .unwrap()
                .ports
                .as_ref()
                .unwrap()
                .iter()
                .map(|p| p.port)
                .collect()
        };
        assert_eq!(ports(&result.services[499]), [81, 82]);
        assert_eq!(ports(&fresh.snapshot.services[499]), [81, 82]);
    }

    #[test]
    fn only_visible_manifest_names_are_read_from_directories() {
        assert!(is_manifest_name(Path::new("d/web.yaml")));
        assert!(is_manifest_name(Path::new("d/web.yml")));
        assert!(is_manifest_name(Path::new("d/web.json")));
        assert!(!is_manifest_name(Path::new("d/.web.yaml")));
        assert!(!is_manifest_name(Path::new("d/web.yaml.swp")));
        assert!(!is_manifest_name(Path::new("d/README.md")));
    }
}
