//! Point files: CSV and .npy round trips, header detection, every bad-input error,
//! streaming, and atomic writes.

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use cnflow::data::{
    csv_chunks, read_csv, read_csv_from, read_npy, read_points, write_atomic, write_csv, write_npy, write_points,
    DataError, Dataset,
};
use ndarray::{array, Array2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnflow-data-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn write_text(path: &Path, text: &str) {
    fs::write(path, text).expect("write fixture");
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn awkward_points() -> Array2<f64> {
    let mut x = Dataset::Swissroll.sample(200, &mut ChaCha8Rng::seed_from_u64(1));
    x[[0, 0]] = 1e-300;
    x[[0, 1]] = -1e300;
    x[[1, 0]] = -0.0;
    x[[1, 1]] = 5e-324;
    x[[2, 0]] = 0.1;
    x[[2, 1]] = f64::MAX;
    x[[3, 0]] = 1.0 / 3.0;
    x[[3, 1]] = 123456789012345680.0;
    x
}

fn bits(x: &Array2<f64>) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn csv_round_trip_is_bit_exact() {
    let dir = scratch("csv-rt");
    let path = dir.join("points.csv");
    let x = awkward_points();
    write_csv(&path, x.view()).expect("write");
    let y = read_csv(&path).expect("read");
    assert_eq!(y.dim(), x.dim());
    assert_eq!(bits(&y), bits(&x));
    assert_eq!(entries(&dir), vec!["points.csv"], "no temporary file left behind");
}

#[test]
fn npy_round_trip_is_bit_exact() {
    let dir = scratch("npy-rt");
    let path = dir.join("points.npy");
    let x = awkward_points();
    write_npy(&path, x.view()).expect("write");
    let y = read_npy(&path).expect("read");
    assert_eq!(bits(&y), bits(&x));
    // write_points / read_points dispatch on the extension.
    let p2 = dir.join("again.NPY");
    write_points(&p2, x.t().t()).expect("write");
    assert_eq!(bits(&read_points(&p2, Some(2)).expect("read")), bits(&x));
    let p3 = dir.join("again.txt");
    write_points(&p3, x.view()).expect("write");
    assert!(fs::read_to_string(&p3).expect("text").contains(','));
    assert_eq!(bits(&read_points(&p3, None).expect("read")), bits(&x));
}

#[test]
fn csv_header_is_detected_and_spaces_trimmed() {
    let x = read_csv_from(Cursor::new("x, y\n 1.5 , -2\n\n3,4e-1\n"), "mem").expect("read");
    assert_eq!(x, array![[1.5, -2.0], [3.0, 0.4]]);
    let x = read_csv_from(Cursor::new("1,2\n3,4\n"), "mem").expect("read");
    assert_eq!(x.nrows(), 2, "a numeric first row is data, not a header");
    let x = read_csv_from(Cursor::new("7\n8\n"), "mem").expect("read");
    assert_eq!(x, array![[7.0], [8.0]]);
}

#[test]
fn malformed_number_names_file_line_and_column() {
    let dir = scratch("malformed");
    let path = dir.join("bad.csv");
    write_text(&path, "a,b\n1,2\n3,oops\n");
    let err = read_csv(&path).expect_err("must fail");
    match &err {
        DataError::Malformed {
            line, column, value, ..
        } => {
            assert_eq!((*line, *column, value.as_str()), (3, 2, "oops"));
        }
        other => panic!("wrong variant {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains(":3:2"),
        "{msg}"
    );
    // A partly numeric first row is a typo, not a header.
    let err = read_csv_from(Cursor::new("1,x\n2,3\n"), "mem").expect_err("must fail");
    assert!(
        matches!(err, DataError::Malformed { line: 1, column: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn non_finite_values_are_refused_with_position() {
    for (text, line, column) in [("1,2\nnan,3\n", 2, 1), ("1,inf\n", 1, 2), ("h\n-infinity\n", 2, 1)] {
        let err = read_csv_from(Cursor::new(text), "f.csv").expect_err("must fail");
        match &err {
            DataError::NonFinite { line: l, column: c, .. } => assert_eq!((*l, *c), (line, column)),
            other => panic!("{text:?}: wrong variant {other:?}"),
        }
        assert!(err.to_string().contains("f.csv"));
    }
}

#[test]
fn ragged_row_is_refused_with_line_and_counts() {
    let err = read_csv_from(Cursor::new("x,y\n1,2\n3,4\n5\n"), "r.csv").expect_err("fail");
    match &err {
        DataError::Ragged {
            line,
            n_columns,
            n_expected,
            ..
        } => {
            assert_eq!((*line, *n_columns, *n_expected), (4, 1, 2));
        }
        other => panic!("wrong variant {other:?}"),
    }
    assert!(err.to_string().contains("r.csv:4"), "{err}");
}

#[test]
fn empty_file_and_header_only_file_are_empty_errors() {
    for text in ["", "\n\n", "x,y\n"] {
        let err = read_csv_from(Cursor::new(text), "e.csv").expect_err("must fail");
        assert!(matches!(err, DataError::Empty { .. }), "{text:?}: {err:?}");
        assert!(err.to_string().contains("e.csv"));
    }
}

#[test]
fn missing_file_and_directory_are_distinct_errors() {
    let dir = scratch("missing");
    let missing = dir.join("nope.csv");
    let err = read_points(&missing, None).expect_err("fail");
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.csv"));
    let err = read_npy(&dir.join("nope.npy")).expect_err("fail");
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    let err = read_points(&dir, None).expect_err("fail");
    assert!(matches!(err, DataError::IsDirectory { .. }), "{err:?}");
    let err = write_csv(&dir, array![[1.0]].view()).expect_err("fail");
    assert!(matches!(err, DataError::IsDirectory { .. }), "{err:?}");
}

#[test]
fn wrong_dimension_is_refused() {
    let dir = scratch("dim");
    let path = dir.join("p.csv");
    write_text(&path, "1,2,3\n4,5,6\n");
    let err = read_points(&path, Some(2)).expect_err("fail");
    assert!(
        matches!(
            err,
            DataError::WrongDimension {
                n_columns: 3,
                n_expected: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(read_points(&path, Some(3)).expect("ok").dim(), (2, 3));
}

/// A version-1.0 .npy file with the given header fields and raw data.
fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let order = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_reads_fortran_f32_and_one_dimensional_arrays() {
    let dir = scratch("npy-kinds");
    // Fortran order: column-major data for [[1, 2], [3, 4], [5, 6]].
    let data: Vec<u8> = [1f32, 3., 5., 2., 4., 6.]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let path = dir.join("f.npy");
    fs::write(&path, npy_bytes("<f4", true, "(3, 2)", &data)).expect("write");
    assert_eq!(read_npy(&path).expect("read"), array![[1., 2.], [3., 4.], [5., 6.]]);
    // 1-D float64 of length 3 reads as 3 × 1.
    let data: Vec<u8> = [0.5f64, -1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let path = dir.join("v.npy");
    fs::write(&path, npy_bytes("<f8", false, "(3,)", &data)).expect("write");
    assert_eq!(read_npy(&path).expect("read"), array![[0.5], [-1.0], [2.0]]);
    // Big-endian float64, C order.
    let data: Vec<u8> = [1.25f64, -3.0].iter().flat_map(|v| v.to_be_bytes()).collect();
    let path = dir.join("be.npy");
    fs::write(&path, npy_bytes(">f8", false, "(1, 2)", &data)).expect("write");
    assert_eq!(read_npy(&path).expect("read"), array![[1.25, -3.0]]);
}

#[test]
fn npy_bad_rank_dtype_and_nan_are_refused() {
    let dir = scratch("npy-bad");
    let zeros = vec![0u8; 8 * 8];
    let path = dir.join("cube.npy");
    fs::write(&path, npy_bytes("<f8", false, "(2, 2, 2)", &zeros)).expect("write");
    let err = read_npy(&path).expect_err("fail");
    assert!(matches!(err, DataError::Npy { .. }), "{err:?}");
    assert!(err.to_string().contains("cube.npy"));
    let path = dir.join("ints.npy");
    fs::write(&path, npy_bytes("<i8", false, "(4, 2)", &zeros)).expect("write");
    assert!(matches!(read_npy(&path), Err(DataError::Npy { .. })));
    let path = dir.join("garbage.npy");
    write_text(&path, "1,2\n3,4\n");
    assert!(matches!(read_npy(&path), Err(DataError::Npy { .. })));
    let data: Vec<u8> = [1.0f64, 2.0, 3.0, f64::NAN]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let path = dir.join("nan.npy");
    fs::write(&path, npy_bytes("<f8", false, "(2, 2)", &data)).expect("write");
    let err = read_npy(&path).expect_err("fail");
    assert!(
        matches!(err, DataError::NonFinite { line: 2, column: 2, .. }),
        "{err:?}"
    );
    let path = dir.join("empty.npy");
    fs::write(&path, npy_bytes("<f8", false, "(0, 2)", &[])).expect("write");
    assert!(matches!(read_npy(&path), Err(DataError::Empty { .. })));
}

#[test]
fn failed_write_leaves_no_file_and_keeps_old_contents() {
    let dir = scratch("atomic");
    let mut x = awkward_points();
    x[[150, 1]] = f64::NAN; // fails after 150 rows have been written
    let path = dir.join("out.csv");
    let err = write_csv(&path, x.view()).expect_err("fail");
    assert!(
        matches!(
            err,
            DataError::NonFiniteOutput {
                row: 151,
                column: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
    // An existing file is left untouched by a failed write.
    write_text(&path, "old\n");
    assert!(write_csv(&path, x.view()).is_err());
    assert!(write_npy(&dir.join("out.npy"), x.view()).is_err());
    assert_eq!(fs::read_to_string(&path).expect("read"), "old\n");
    assert_eq!(entries(&dir), vec!["out.csv"]);
    // Any failing writer: bytes written, then an error.
    let target = dir.join("custom.bin");
    let res: Result<(), DataError> = write_atomic(&target, |w| {
        w.write_all(b"partial").map_err(|source| DataError::Io {
            file: "custom".into(),
            action: "writing",
            error: source,
        })?;
        Err(DataError::Empty { file: "custom".into() })
    });
    assert!(res.is_err());
    assert_eq!(entries(&dir), vec!["out.csv"]);
}

#[test]
fn csv_chunks_stream_blocks_equal_to_whole_read() {
    let dir = scratch("chunks");
    let path = dir.join("big.csv");
    let x = Dataset::Moons.sample(10, &mut ChaCha8Rng::seed_from_u64(3));
    write_csv(&path, x.view()).expect("write");
    let blocks: Vec<Array2<f64>> = csv_chunks(&path, 3)
        .expect("open")
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(blocks.iter().map(|b| b.nrows()).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
    let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
    let joined = ndarray::concatenate(ndarray::Axis(0), &views).expect("concat");
    assert_eq!(joined, read_csv(&path).expect("read"));
    // An error after good blocks is reported once, then the stream ends.
    write_text(&path, "1,2\n3,4\n5,6\n7\n");
    let mut it = csv_chunks(&path, 2).expect("open");
    assert!(matches!(it.next(), Some(Ok(_))));
    assert!(matches!(it.next(), Some(Err(DataError::Ragged { line: 4, .. }))));
    assert!(it.next().is_none());
    // A missing file fails at open.
    assert!(matches!(
        csv_chunks(&dir.join("no.csv"), 2),
        Err(DataError::NotFound { .. })
    ));
}

#[test]
fn byte_order_mark_before_header_or_first_number_is_ignored() {
    let x = read_csv_from(Cursor::new("\u{feff}x,y\n1,2\n"), "bom").expect("read");
    assert_eq!(x, array![[1.0, 2.0]]);
    let x = read_csv_from(Cursor::new("\u{feff}1,2\n"), "bom").expect("read");
    assert_eq!(x, array![[1.0, 2.0]]);
}

mod round_trip_property {
    use super::*;
    use cnflow::data::write_csv_to;
    use proptest::prelude::*;

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            -1e3..1e3f64,
            Just(0.0),
            Just(-0.0),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn csv_text_round_trip_is_bit_exact_for_any_finite_points(
            (n_rows, n_cols, values) in (1usize..12, 1usize..5).prop_flat_map(|(r, c)| {
                (Just(r), Just(c), proptest::collection::vec(finite(), r * c))
            })
        ) {
            let x = Array2::from_shape_vec((n_rows, n_cols), values).expect("shape");
            let mut buf = Vec::new();
            write_csv_to(&mut buf, x.view(), "mem").expect("write");
            let y = read_csv_from(Cursor::new(buf), "mem").expect("read");
            prop_assert_eq!(bits(&y), bits(&x));
        }
    }
}
