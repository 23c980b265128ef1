//! A write-then-read buffer for catalog text: memory up to a threshold, then an unnamed
//! temporary file in the state directory, so a catalog of millions of entries does not
//! grow the process's memory; and [`CatalogSpool`], which writes catalog entries into one
//! while counting and indexing them.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use crate::format::catalog::CatalogEntry;
use crate::format::catalog_index::IndexBuilder;

/// Bytes kept in memory before spilling to disk.
const MEMORY_LIMIT: usize = 4 << 20;

pub struct Spool {
    memory: Vec<u8>,
    file: Option<File>,
    dir: PathBuf,
    len: u64,
}

impl Spool {
    /// A spool that spills into `dir` (created when needed).
    pub fn new(dir: PathBuf) -> Spool {
        Spool {
            memory: Vec::new(),
            file: None,
            dir,
            len: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A reader over everything written, from the start.
    pub fn into_reader(self) -> io::Result<Box<dyn Read + Send>> {
        match self.file {
            Some(mut file) => {
                file.write_all(&self.memory)?;
                file.seek(SeekFrom::Start(0))?;
                Ok(Box::new(io::BufReader::with_capacity(1 << 20, file)))
            }
            None => Ok(Box::new(Cursor::new(self.memory))),
        }
    }
}

impl Write for Spool {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.memory.extend_from_slice(data);
        self.len += data.len() as u64;
        if self.memory.len() >= MEMORY_LIMIT {
            if self.file.is_none() {
                std::fs::create_dir_all(&self.dir)?;
                self.file = Some(tempfile::tempfile_in(&self.dir)?);
            }
            if let Some(file) = self.file.as_mut() {
                file.write_all(&self.memory)?;
                self.memory.clear();
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A catalog being written: its lines spooled, counted, and indexed as they come.
pub struct CatalogSpool {
    spool: Spool,
    index: IndexBuilder,
    entries: u64,
    line: Vec<u8>,
}

/// A written catalog: its text, its entry count, and its index text and mark count when
/// the entries came in path order.
pub struct SpooledCatalog {
    pub text: Spool,
    pub entries: u64,
    pub index: Option<(Vec<u8>, u64)>,
}

impl CatalogSpool {
    /// A catalog spilling into `dir` past the spool's memory limit.
    pub fn new(dir: PathBuf) -> CatalogSpool {
        CatalogSpool {
            spool: Spool::new(dir),
            index: IndexBuilder::new(),
            entries: 0,
            line: Vec::with_capacity(256),
        }
    }

    /// Appends one entry as a line.
    pub fn write(&mut self, entry: &CatalogEntry) -> io::Result<()> {
        self.line.clear();
        entry.encode_line(&mut self.line);
        self.index.push(&entry.path, self.line.len() as u64);
        self.entries += 1;
        self.spool.write_all(&self.line)
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    pub fn finish(self) -> SpooledCatalog {
        SpooledCatalog {
            text: self.spool,
            entries: self.entries,
            index: self.index.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path().join("tmp"));
        let line = vec![b'x'; 1000];
        let mut expected = Vec::new();
        for i in 0..10_000u32 {
            spool.write_all(&i.to_le_bytes()).unwrap();
            spool.write_all(&line).unwrap();
            expected.extend_from_slice(&i.to_le_bytes());
            expected.extend_from_slice(&line);
        }
        assert_eq!(spool.len(), expected.len() as u64);
        let mut back = Vec::new();
        spool.into_reader().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, expected);
    }
}
