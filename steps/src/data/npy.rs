//! NumPy `.npy` files (format versions 1 to 3), as telemanom publishes its channels.
//! Reads little-endian `f8`, `f4`, `i8`, `i4` and `u1` arrays of one or two dimensions
//! into `f64`; `.npy.gz` is decompressed transparently.
//!
//! The data is streamed and read only up to the size the header declares: a small
//! `.npy.gz` that inflates to gigabytes costs its header's worth of memory, not the
//! gigabytes. (Why not `npyz`: it allocates whatever header length the file claims —
//! 4 GiB for a 12-byte file — and multiplies shapes unchecked.)

use std::io::{BufReader, Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use flate2::read::MultiGzDecoder;

/// The longest header accepted, as NumPy's own `max_header_size` default: a real header
/// is about a hundred bytes, and a length field of 4 GiB must not become an allocation.
pub const MAX_HEADER_LEN: usize = 10_000;

/// A 1-D or 2-D array as row-major `f64`; a 1-D array is one column.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub n_rows: usize,
    pub n_cols: usize,
    pub values: Vec<f64>,
}

/// Reads a `.npy` or `.npy.gz` file.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let file = BufReader::new(file);
    let is_gz = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("gz"));
    let array = if is_gz {
        read_npy_from(MultiGzDecoder::new(file))
    } else {
        read_npy_from(file)
    };
    array.with_context(|| format!("cannot read NumPy file `{}`", path.display()))
}

/// Reads `.npy` bytes from a stream, consuming no more than the header declares (and one
/// byte past it, to refuse trailing data).
pub fn read_npy_from(mut reader: impl Read) -> Result<NpyArray> {
    let mut preamble = [0u8; 8];
    reader
        .read_exact(&mut preamble)
        .ok()
        .filter(|_| &preamble[..6] == b"\x93NUMPY")
        .context("not a .npy file (missing the `\\x93NUMPY` magic)")?;
    let major = preamble[6];
    let header_len = match major {
        1 => {
            let mut len = [0u8; 2];
            reader.read_exact(&mut len).context("truncated header")?;
            u16::from_le_bytes(len) as usize
        }
        2 | 3 => {
            let mut len = [0u8; 4];
            reader.read_exact(&mut len).context("truncated header")?;
            u32::from_le_bytes(len) as usize
        }
        _ => bail!("unsupported .npy format version {major}"),
    };
    if header_len > MAX_HEADER_LEN {
        bail!("header of {header_len} bytes is longer than the {MAX_HEADER_LEN} NumPy allows");
    }
    let mut header = vec![0u8; header_len];
    reader.read_exact(&mut header).context("truncated header")?;
    let header = std::str::from_utf8(&header).context("header is not text")?;
    let descr = dict_value(header, "descr")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let dtype = Dtype::parse(descr)?;
    let fortran_order = match dict_value(header, "fortran_order")? {
        "True" => true,
        "False" => false,
        other => bail!("bad `fortran_order` value `{other}`"),
    };
    let shape = parse_shape(dict_value(header, "shape")?)?;
    let (n_rows, n_cols) = match shape[..] {
        [n] => (n, 1),
        [n, k] => (n, k),
        _ => bail!("expected a 1-D or 2-D array, found shape {shape:?}"),
    };
    if n_cols == 0 {
        bail!("shape ({n_rows}, 0) has no columns");
    }
    let expected = n_rows
        .checked_mul(n_cols)
        .and_then(|n| n.checked_mul(dtype.size()))
        .with_context(|| format!("shape ({n_rows}, {n_cols}) is too large"))?;
    // Read what the shape needs and one byte more: never the rest of a bomb.
    let mut data = Vec::new();
    reader
        .by_ref()
        .take(expected as u64 + 1)
        .read_to_end(&mut data)
        .context("cannot read the data")?;
    if data.len() != expected {
        let found = if data.len() > expected {
            "more".to_string()
        } else {
            data.len().to_string()
        };
        bail!(
            "shape ({n_rows}, {n_cols}) of {descr} needs {expected} data bytes, found {found} (truncated or corrupt file)"
        );
    }
    let decoded: Vec<f64> = data
        .chunks_exact(dtype.size())
        .map(|chunk| dtype.decode(chunk))
        .collect();
    let values = if fortran_order && n_cols > 1 {
        let mut row_major = vec![0.0; decoded.len()];
        for col in 0..n_cols {
            for row in 0..n_rows {
                row_major[row * n_cols + col] = decoded[col * n_rows + row];
            }
        }
        row_major
    } else {
        decoded
    };
    Ok(NpyArray {
        n_rows,
        n_cols,
        values,
    })
}

/// Writes row-major `values` ([n_rows, n_cols]) as a version 1 `<f8` array; gzip when
/// the name ends in `.gz`. Used to build fixtures and by users exporting data.
pub fn write_npy(path: &Path, n_rows: usize, n_cols: usize, values: &[f64]) -> Result<()> {
    if values.len() != n_rows * n_cols {
        bail!(
            "cannot write `{}`: {} values do not make {n_rows} x {n_cols}",
            path.display(),
            values.len()
        );
    }
    let dict =
        format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({n_rows}, {n_cols}), }}");
    // Magic (6) + version (2) + length (2) + dict + padding + '\n' is a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let header = format!(
        "{dict}{}\n",
        " ".repeat(unpadded.next_multiple_of(64) - unpadded)
    );
    let mut bytes = Vec::with_capacity(10 + header.len() + values.len() * 8);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    let write = || -> std::io::Result<()> {
        let file = std::fs::File::create(path)?;
        if path.extension().is_some_and(|ext| ext == "gz") {
            let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::best());
            encoder.write_all(&bytes)?;
            encoder.finish()?.sync_all()
        } else {
            let mut file = file;
            file.write_all(&bytes)
        }
    };
    write().with_context(|| format!("cannot write `{}`", path.display()))
}

/// Element types this reader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F8,
    F4,
    I8,
    I4,
    U1,
}

impl Dtype {
    fn parse(descr: &str) -> Result<Dtype> {
        // The byte-order character, then the kind; split after a whole character.
        let (order, kind) = descr.split_at(descr.chars().next().map_or(0, char::len_utf8));
        let dtype = match kind {
            "f8" => Dtype::F8,
            "f4" => Dtype::F4,
            "i8" => Dtype::I8,
            "i4" => Dtype::I4,
            "u1" => Dtype::U1,
            _ => bail!("unsupported dtype `{descr}` (supported: <f8, <f4, <i8, <i4, |u1)"),
        };
        match (order, dtype) {
            ("<", _) | ("|", Dtype::U1) => Ok(dtype),
            (">", _) => bail!("big-endian dtype `{descr}` is not supported: save it little-endian"),
            _ => bail!("unsupported dtype `{descr}`"),
        }
    }

    fn size(self) -> usize {
        match self {
            Dtype::F8 | Dtype::I8 => 8,
            Dtype::F4 | Dtype::I4 => 4,
            Dtype::U1 => 1,
        }
    }

    fn decode(self, chunk: &[u8]) -> f64 {
        let mut buf = [0u8; 8];
        buf[..chunk.len()].copy_from_slice(chunk);
        match self {
            Dtype::F8 => f64::from_le_bytes(buf),
            Dtype::F4 => f32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as f64,
            Dtype::I8 => i64::from_le_bytes(buf) as f64,
            Dtype::I4 => i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as f64,
            Dtype::U1 => buf[0] as f64,
        }
    }
}

/// The raw text of `key`'s value in the header's Python dict literal.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let key_pos = quoted
        .iter()
        .find_map(|q| header.find(q.as_str()).map(|pos| pos + q.len()))
        .with_context(|| format!("header has no `{key}`"))?;
    let rest = header[key_pos..]
        .trim_start()
        .strip_prefix(':')
        .with_context(|| format!("bad `{key}` entry"))?;
    let rest = rest.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    }
    .with_context(|| format!("bad `{key}` entry"))?;
    Ok(rest[..end].trim())
}

/// `(2000, 55)`, `(2000,)` or `()` as a list of dimensions.
fn parse_shape(text: &str) -> Result<Vec<usize>> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .with_context(|| format!("bad shape `{text}`"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|dim| !dim.is_empty())
        .map(|dim| {
            dim.trim_end_matches('L')
                .parse::<usize>()
                .with_context(|| format!("bad shape `{text}`"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `.npy` bytes the way NumPy does, for any header version and dtype.
    fn npy_bytes(major: u8, descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
        header.push('\n');
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.push(major);
        bytes.push(0);
        if major == 1 {
            bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn write_then_read_round_trips_plain_and_gz() {
        let dir = tempfile::tempdir().unwrap();
        let values = vec![1.5, -2.0, 0.0, 3.25, f64::MAX, -1e-300];
        for name in ["a.npy", "a.npy.gz"] {
            let path = dir.path().join(name);
            write_npy(&path, 3, 2, &values).unwrap();
            let array = read_npy(&path).unwrap();
            assert_eq!((array.n_rows, array.n_cols), (3, 2));
            assert_eq!(array.values, values);
        }
        let raw = std::fs::read(dir.path().join("a.npy")).unwrap();
        let header_end = 10 + u16::from_le_bytes([raw[8], raw[9]]) as usize;
        assert_eq!(header_end % 64, 0, "NumPy aligns the data to 64 bytes");
    }

    #[test]
    fn reads_every_dtype_and_header_version() {
        let f4: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let i8: Vec<u8> = [7i64, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let i4: Vec<u8> = [7i32, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let cases = [
            (1, "<f4", f4.clone(), vec![1.5, -2.0]),
            (2, "<i8", i8, vec![7.0, -3.0]),
            (3, "<i4", i4, vec![7.0, -3.0]),
            (1, "|u1", vec![0, 255], vec![0.0, 255.0]),
        ];
        for (major, descr, data, expected) in cases {
            let array = read_npy_from(&*npy_bytes(major, descr, false, "(2,)", &data)).unwrap();
            assert_eq!((array.n_rows, array.n_cols), (2, 1), "{descr}");
            assert_eq!(array.values, expected, "{descr}");
        }
    }

    #[test]
    fn fortran_order_is_transposed_to_rows() {
        // Column-major [[1, 2, 3], [4, 5, 6]] is stored as 1 4 2 5 3 6.
        let data: Vec<u8> = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let array = read_npy_from(&*npy_bytes(1, "<f8", true, "(2, 3)", &data)).unwrap();
        assert_eq!(array.values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn reading_stops_at_the_size_the_header_declares() {
        // A header for 100 x 55 doubles followed by endless zeros, as a gzip bomb inflates.
        let header = npy_bytes(1, "<f8", false, "(100, 55)", &[]);
        let mut consumed = 0usize;
        let endless = header.as_slice().chain(std::io::repeat(0));
        let counting = CountingReader(endless, &mut consumed);
        let message = read_npy_from(counting).unwrap_err().to_string();
        assert!(
            message.contains("needs 44000 data bytes, found more"),
            "{message}"
        );
        assert!(
            consumed <= header.len() + 44_000 + 1,
            "read {consumed} bytes"
        );
    }

    #[test]
    fn a_gzip_bomb_is_refused_without_inflating_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.npy.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        encoder
            .write_all(&npy_bytes(1, "<f8", false, "(2, 2)", &[]))
            .unwrap();
        std::io::copy(&mut std::io::repeat(0).take(64 << 20), &mut encoder).unwrap();
        encoder.finish().unwrap();
        let message = format!("{:#}", read_npy(&path).unwrap_err());
        assert!(
            message.contains("bomb.npy.gz") && message.contains("needs 32 data bytes, found more"),
            "{message}"
        );
    }

    #[test]
    fn headers_that_claim_too_much_are_refused_before_allocating() {
        let mut huge_header = b"\x93NUMPY\x02\x00".to_vec();
        huge_header.extend_from_slice(&u32::MAX.to_le_bytes());
        let message = read_npy_from(huge_header.as_slice())
            .unwrap_err()
            .to_string();
        assert!(message.contains("longer than the 10000"), "{message}");
        let huge_shape = npy_bytes(1, "<f8", false, "(18446744073709551615, 2)", &[]);
        let message = read_npy_from(huge_shape.as_slice())
            .unwrap_err()
            .to_string();
        assert!(message.contains("too large"), "{message}");
        let no_columns = npy_bytes(1, "<f8", false, "(1000000000000, 0)", &[]);
        let message = read_npy_from(no_columns.as_slice())
            .unwrap_err()
            .to_string();
        assert!(message.contains("has no columns"), "{message}");
    }

    /// Counts the bytes a reader hands out.
    struct CountingReader<'a, R>(R, &'a mut usize);

    impl<R: Read> Read for CountingReader<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            *self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn a_dtype_that_starts_with_a_multibyte_character_is_an_error() {
        // Found by the `npy` fuzz target (fuzz/corpus/npy/regression-dtype-utf8).
        let bytes = npy_bytes(1, "\u{6c3}u0", false, "(2,)", &[0, 255]);
        let message = read_npy_from(bytes.as_slice()).unwrap_err().to_string();
        assert!(message.contains("unsupported dtype"), "{message}");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, Vec<u8>, &str); 5] = [
            ("magic.npy", b"hello world, not numpy".to_vec(), "magic"),
            (
                "big.npy",
                npy_bytes(1, ">f8", false, "(1,)", &[0; 8]),
                "big-endian",
            ),
            (
                "complex.npy",
                npy_bytes(1, "<c16", false, "(1,)", &[0; 16]),
                "unsupported dtype `<c16`",
            ),
            (
                "short.npy",
                npy_bytes(1, "<f8", false, "(2, 2)", &[0; 24]),
                "needs 32 data bytes, found 24",
            ),
            (
                "cube.npy",
                npy_bytes(1, "<f8", false, "(1, 1, 1)", &[0; 8]),
                "1-D or 2-D",
            ),
        ];
        for (name, bytes, expected) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let message = format!("{:#}", read_npy(&path).unwrap_err());
            assert!(
                message.contains(name) && message.contains(expected),
                "{message}"
            );
        }
    }
}
