"""Tests of robustlab.data: loaders, splits, checksums and image I/O (real data sets skip when absent)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab.core.errors import ConfigError, DataError, InputError
from robustlab.data import (
    Checksum,
    Dataset,
    cifar,
    faces,
    list_datasets,
    load_cifar10_dir,
    load_dataset,
    load_idx_dataset,
    locate,
    mnist,
    parse_cifar_records,
    parse_idx,
    per_class_split,
    read_image,
    registry,
    resize_images,
    stratified_sample,
    stratified_split,
    write_image,
)
from robustlab.data.download import safe_extract_tar
from robustlab.data.idx import read_idx

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
needs_orl = pytest.mark.skipif(faces.find_faces_dir("orl")[0] is None, reason="ORL faces not found")
needs_yale = pytest.mark.skipif(faces.find_faces_dir("yale")[0] is None, reason="Yale faces not found")


# ----------------------------------------------------------------------------- helpers and fixtures


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Point every default data location into tmp_path, so no real data set is found by accident."""
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIR", tmp_path / "system")
    return tmp_path


def idx_bytes(arr: np.ndarray) -> bytes:
    """An uncompressed uint8 IDX file holding `arr`."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, seed: int = 0, n_train: int = 12, n_test: int = 5):
    """Four tiny gzipped IDX files in `folder`; returns (arrays, checksum table by gz md5)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 3, 4), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 3, 4), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    table = {}
    for name, arr in arrays.items():
        data = gzip.compress(idx_bytes(arr))
        (folder / name).write_bytes(data)
        table[name] = Checksum(md5=hashlib.md5(data).hexdigest())
    return arrays, table


def cifar_records(labels: list[int], seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    recs = rng.integers(0, 256, (len(labels), 3073), dtype=np.uint8)
    recs[:, 0] = labels
    return recs.tobytes()


def write_class_folders(root: Path, sizes: dict[str, list[tuple[int, int]]], seed: int = 0):
    """PNG images in root/<class>/<i>.png; returns {class: [uint8 HxWx3 arrays]}."""
    rng = np.random.default_rng(seed)
    out = {}
    for cls, shapes in sizes.items():
        (root / cls).mkdir(parents=True)
        out[cls] = []
        for i, (h, w) in enumerate(shapes):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
            out[cls].append(arr)
    return out


# ----------------------------------------------------------------------------- splits


def test_stratified_split_counts_disjoint_complete_and_seeded():
    counts = [40, 20, 12, 2, 1]
    labels = torch.cat([torch.full((c,), k, dtype=torch.int64) for k, c in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    train, test = stratified_split(labels, 0.25, seed=3)
    assert train.dtype == test.dtype == torch.int64
    assert sorted(torch.cat([train, test]).tolist()) == list(range(len(labels)))  # disjoint + complete
    assert torch.bincount(labels[test], minlength=5).tolist() == [10, 5, 3, 1, 0]
    assert torch.bincount(labels[train], minlength=5).tolist() == [30, 15, 9, 1, 1]
    again = stratified_split(labels, 0.25, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(test, again[1])
    other = stratified_split(labels, 0.25, seed=4)
    assert not torch.equal(test.sort().values, other[1].sort().values)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_split_rejects_bad_fraction(fraction):
    with pytest.raises(ConfigError):
        stratified_split(torch.arange(10) % 2, fraction, seed=0)


def test_per_class_split_exact_counts_and_errors():
    labels = torch.arange(40) % 4  # 10 per class
    train, test = per_class_split(labels, 3, seed=0)
    assert torch.bincount(labels[train]).tolist() == [3, 3, 3, 3]
    assert torch.bincount(labels[test]).tolist() == [7, 7, 7, 7]
    assert set(train.tolist()).isdisjoint(test.tolist()) and len(train) + len(test) == 40
    assert torch.equal(train, per_class_split(labels, 3, seed=0)[0])
    assert not torch.equal(train.sort().values, per_class_split(labels, 3, seed=1)[0].sort().values)
    with pytest.raises(ConfigError, match="only 10 samples"):
        per_class_split(labels, 10, seed=0)
    with pytest.raises(ConfigError):
        per_class_split(labels, 0, seed=0)


def test_stratified_sample_keeps_proportions():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_sample(labels, 20, seed=0)
    assert torch.bincount(labels[idx]).tolist() == [12, 6, 2]
    assert torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == 20
    assert torch.equal(stratified_sample(labels, 500, seed=0), torch.arange(100))


# ----------------------------------------------------------------------------- Dataset and digits


def test_digits_loader_shapes_range_and_split():
    ds = load_dataset("digits", seed=0)
    assert ds.name == "digits" and ds.num_classes == 10 and ds.classes == [str(i) for i in range(10)]
    assert ds.input_shape == (1, 8, 8)
    assert len(ds.y_train) + len(ds.y_test) == 1797
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (1, 8, 8)
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert torch.equal(x * 16, (x * 16).round())  # raw 0..16 divided by 16
    frac = torch.bincount(ds.y_test, minlength=10) / (
        torch.bincount(ds.y_test, minlength=10) + torch.bincount(ds.y_train, minlength=10)
    )
    assert torch.all((frac - 0.25).abs() < 0.01)
    from sklearn.datasets import load_digits

    raw = load_digits()
    first = (ds.x_test[0, 0] * 16).numpy()
    matches = np.flatnonzero((raw.images == first).all(axis=(1, 2)))
    assert len(matches) and int(raw.target[matches[0]]) == int(ds.y_test[0])


def test_digits_split_is_seeded():
    a, b, c = (load_dataset("digits", seed=s) for s in (5, 5, 6))
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_test, c.x_test)
    few = load_dataset("digits", train_per_class=10)
    assert torch.bincount(few.y_train).tolist() == [10] * 10 and len(few.y_test) == 1797 - 100


def test_subset_stratified_deterministic_and_from_the_data():
    ds = load_dataset("digits")
    sub = ds.subset(n_train=100, n_test=50, seed=1)
    assert len(sub.y_train) == 100 and len(sub.y_test) == 50
    assert (torch.bincount(sub.y_test, minlength=10) - 5).abs().max() <= 1
    assert torch.equal(sub.x_train, ds.subset(n_train=100, n_test=50, seed=1).x_train)
    assert not torch.equal(sub.x_train, ds.subset(n_train=100, seed=2).x_train)
    assert torch.equal(ds.subset(n_train=100).x_test, ds.x_test)
    flat = ds.x_train.flatten(1)
    assert all(bool((flat == row).all(1).any()) for row in sub.x_train.flatten(1)[:10])
    assert "train=100" in repr(sub) and "tensor" not in repr(sub)


def test_dataset_validates_and_is_frozen():
    x = torch.zeros(4, 1, 2, 2)
    ds = Dataset("t", x, torch.tensor([0, 1, 0, 1]), x, torch.tensor([1, 0, 1, 0]), ["a", "b"], "here")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"
    with pytest.raises(InputError):
        Dataset("t", x, torch.tensor([0, 2, 0, 1]), x, torch.tensor([1, 0, 1, 0]), ["a", "b"])
    with pytest.raises(InputError):
        Dataset("t", x.double(), torch.tensor([0, 1, 0, 1]), x, torch.tensor([1, 0, 1, 0]), ["a", "b"])


def test_unknown_name_and_bad_arguments():
    with pytest.raises(ConfigError, match="fashion-mnist") as err:
        load_dataset("imagenet")
    assert "digits" in str(err.value) and "folder:" in str(err.value)
    with pytest.raises(ConfigError):
        load_dataset("digits", test_fraction=1.0)
    with pytest.raises(ConfigError):
        load_dataset("digits", seed=-1)
    with pytest.raises(ConfigError):
        load_dataset("digits", resize=(0, 4))
    with pytest.raises(ConfigError):
        load_dataset("folder")


def test_resize_gives_requested_size():
    ds = load_dataset("digits", resize=(12, 10))
    assert ds.input_shape == (1, 12, 10) and ds.x_test.shape[2:] == (12, 10)
    assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) <= 1.0
    assert load_dataset("digits", resize=16).input_shape == (1, 16, 16)
    flat = torch.full((2, 3, 9, 7), 0.4)
    assert torch.allclose(resize_images(flat, (4, 5)), torch.full((2, 3, 4, 5), 0.4))


# ----------------------------------------------------------------------------- IDX files


def test_idx_round_trip_through_load_dataset(isolated, monkeypatch):
    arrays, table = write_idx_set(isolated / "mnist-files")
    for name, ck in table.items():
        monkeypatch.setitem(mnist.IDX_SOURCES["mnist"].checksums, name, ck)
    ds = load_dataset("mnist", root=isolated / "mnist-files", download=False)
    assert ds.input_shape == (1, 3, 4) and ds.x_train.dtype == torch.float32
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte.gz"].astype(np.float32) / 255).unsqueeze(1)
    assert torch.equal(ds.x_train, expected)
    assert ds.y_test.tolist() == arrays["t10k-labels-idx1-ubyte.gz"].tolist()
    assert ds.source == str(isolated / "mnist-files")
    # root may also be the parent of a <name>/ folder
    write_idx_set(isolated / "parent" / "mnist")
    assert len(load_dataset("mnist", root=isolated / "parent", download=False).y_train) == 12


def test_idx_accepts_recompressed_file_by_payload_sha256(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    payload = idx_bytes(arr)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(payload, compresslevel=1))
    good = Checksum(md5="0" * 32, sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    assert np.array_equal(read_idx(path, good, ndim=3), arr)
    with pytest.raises(DataError, match="checksum mismatch"):
        read_idx(path, Checksum(md5="0" * 32, sha256="1" * 64), ndim=3)
    with pytest.raises(DataError, match="checksum mismatch"):
        read_idx(path, dataclasses.replace(good, size=len(payload) + 1), ndim=3)


def test_idx_checksum_mismatch_raises(isolated):
    _, table = write_idx_set(isolated / "m")
    table["t10k-labels-idx1-ubyte.gz"] = Checksum(md5="0" * 32)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz") as err:
        load_idx_dataset("mnist", root=isolated / "m", download=False, checksums=table)
    assert "checksum mismatch" in str(err.value)
    with pytest.raises(DataError, match="no checksum"):
        load_idx_dataset("mnist", root=isolated / "m", download=False, checksums={})


def test_truncated_gzip_names_the_file(isolated):
    _, table = write_idx_set(isolated / "m")
    path = isolated / "m" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="truncated or corrupt gzip") as err:
        load_idx_dataset("mnist", root=isolated / "m", download=False, checksums=table)
    assert str(path) in str(err.value)


def test_idx_wrong_magic_and_short_payload():
    good = idx_bytes(np.zeros((2, 3, 4), np.uint8))
    assert parse_idx(good, "ok", ndim=3).shape == (2, 3, 4)
    with pytest.raises(DataError, match="f.idx: wrong IDX magic"):
        parse_idx(b"\x01\x02" + good[2:], "f.idx", ndim=3)
    with pytest.raises(DataError, match="wrong IDX magic"):
        parse_idx(good, "labels.idx", ndim=1)  # an image file where labels were expected
    with pytest.raises(DataError, match="short"):
        parse_idx(good[:-1], "f.idx", ndim=3)
    with pytest.raises(DataError, match="too long"):
        parse_idx(good + b"\x00", "f.idx", ndim=3)


def test_wrong_magic_through_loader(isolated):
    _, table = write_idx_set(isolated / "m")
    path = isolated / "m" / "train-labels-idx1-ubyte.gz"
    data = gzip.compress(idx_bytes(np.zeros((12, 2), np.uint8)))  # 2-d where 1-d labels belong
    path.write_bytes(data)
    table[path.name] = Checksum(md5=hashlib.md5(data).hexdigest())
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: wrong IDX magic"):
        load_idx_dataset("mnist", root=isolated / "m", download=False, checksums=table)


def test_missing_files_without_download_say_where(isolated):
    with pytest.raises(DataError, match="not found") as err:
        load_dataset("mnist", download=False)
    assert str(isolated / "data" / "mnist") in str(err.value)
    assert str(isolated / "system" / "mnist") in str(err.value)


def test_download_verifies_and_keeps_files(isolated, monkeypatch):
    arrays, table = write_idx_set(isolated / "server")
    source = dataclasses.replace(
        mnist.IDX_SOURCES["mnist"], base_url=(isolated / "server").as_uri() + "/", checksums=table
    )
    monkeypatch.setitem(mnist.IDX_SOURCES, "mnist", source)
    ds = load_dataset("mnist")
    assert ds.source == str(isolated / "data" / "mnist")
    assert (isolated / "data" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    assert ds.y_train.tolist() == arrays["train-labels-idx1-ubyte.gz"].tolist()


def test_download_failures_raise_and_leave_nothing(isolated, monkeypatch):
    _, table = write_idx_set(isolated / "server")
    table["train-images-idx3-ubyte.gz"] = Checksum(md5="0" * 32)
    url = (isolated / "server").as_uri() + "/"
    source = dataclasses.replace(mnist.IDX_SOURCES["mnist"], base_url=url, checksums=table)
    monkeypatch.setitem(mnist.IDX_SOURCES, "mnist", source)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset("mnist")
    assert not list((isolated / "data" / "mnist").glob("train-images*"))
    monkeypatch.setitem(mnist.IDX_SOURCES, "mnist", dataclasses.replace(source, base_url=url + "nowhere/"))
    with pytest.raises(DataError, match="download .* failed") as err:
        load_dataset("mnist")
    assert "not found in" in str(err.value)


# ----------------------------------------------------------------------------- CIFAR-10 binary


def test_cifar_record_parser_layout():
    data = cifar_records([3, 9, 0], seed=1)
    x, y = parse_cifar_records(data, "t.bin", records=None)
    raw = np.frombuffer(data, np.uint8).reshape(3, 3073)
    assert x.shape == (3, 3, 32, 32) and y.tolist() == [3, 9, 0]
    for i, c, h, w in [(0, 0, 0, 0), (1, 1, 5, 7), (2, 2, 31, 31), (1, 2, 0, 31)]:
        assert x[i, c, h, w] == raw[i, 1 + c * 1024 + h * 32 + w]
    with pytest.raises(DataError, match="t.bin: wrong file size"):
        parse_cifar_records(data[:-1], "t.bin", records=None)
    with pytest.raises(DataError, match="wrong file size"):
        parse_cifar_records(data, "t.bin", records=10_000)
    with pytest.raises(DataError, match="label 10"):
        parse_cifar_records(cifar_records([10]), "t.bin", records=None)


def test_cifar_dir_loader_on_small_files(isolated):
    folder = isolated / "c" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(cifar_records([i, i + 1], seed=i))
    test_bytes = cifar_records([7, 8, 9], seed=9)
    (folder / "test_batch.bin").write_bytes(test_bytes)
    (folder / "batches.meta.txt").write_text("\n".join(cifar.CLASSES).upper() + "\n\n")
    ds = load_cifar10_dir(folder, records_per_batch=None)
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.y_train.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    raw = np.frombuffer(test_bytes, np.uint8).reshape(3, 3073)[:, 1:].reshape(3, 3, 32, 32)
    assert torch.equal(ds.x_test, torch.from_numpy(raw.astype(np.float32) / 255))
    assert ds.classes[0] == "AIRPLANE" and ds.num_classes == 10
    # through load_dataset the official record count is required
    with pytest.raises(DataError, match="data_batch_1.bin: wrong file size"):
        load_dataset("cifar10", root=isolated / "c", download=False)


def test_safe_extract_tar_refuses_path_traversal(tmp_path):
    def make(names):
        archive = tmp_path / f"a{len(names)}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for name in names:
                info = tarfile.TarInfo(name)
                info.size = 2
                tar.addfile(info, io.BytesIO(b"ok"))
        return archive

    archive = make(["cifar-10-batches-bin/x.bin", "other/y"])
    safe_extract_tar(archive, tmp_path / "out", "cifar-10-batches-bin")
    assert (tmp_path / "out" / "cifar-10-batches-bin" / "x.bin").read_bytes() == b"ok"
    assert not (tmp_path / "out" / "other").exists()
    with pytest.raises(DataError, match="unsafe"):
        safe_extract_tar(make(["cifar-10-batches-bin/x.bin", "../evil", "z"]), tmp_path / "out2")
    assert not (tmp_path / "evil").exists()


# ----------------------------------------------------------------------------- image files


@pytest.mark.parametrize("ext", ["png", "pgm", "bmp", "gif"])
def test_grey_image_round_trip_is_exact(tmp_path, ext):
    pixels = torch.randint(0, 256, (1, 7, 5), generator=torch.Generator().manual_seed(0))
    img = pixels.float() / 255
    path = write_image(img, tmp_path / f"a.{ext}")
    back = read_image(path)
    assert back.shape == (1, 7, 5) and back.dtype == torch.float32
    assert torch.equal((back * 255).round(), pixels.float())
    if ext == "pgm":
        assert path.read_bytes()[:2] == b"P5"


@pytest.mark.parametrize("ext", ["png", "ppm"])
def test_colour_image_round_trip_is_exact(tmp_path, ext):
    img = torch.randint(0, 256, (3, 4, 6), generator=torch.Generator().manual_seed(1)).float() / 255
    back = read_image(write_image(img, tmp_path / f"c.{ext}"))
    assert back.shape == (3, 4, 6) and torch.equal(back, img)


def test_jpeg_is_close(tmp_path):
    img = torch.full((3, 16, 16), 0.5)
    back = read_image(write_image(img, tmp_path / "j.jpg"))
    assert back.shape == (3, 16, 16) and (back - img).abs().max() < 0.02


def test_read_image_modes(tmp_path):
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    x = read_image(tmp_path / "rgba.png")
    assert x.shape == (3, 3, 4) and torch.equal((x[0] * 255).round(), torch.full((3, 4), 200.0))
    assert float(x[1:].max()) == 0
    Image.fromarray(np.full((2, 3), 65535 // 5, np.uint16)).save(tmp_path / "deep.png")
    assert torch.allclose(read_image(tmp_path / "deep.png"), torch.full((1, 2, 3), (65535 // 5) / 65535))


def test_extensionless_gif_reads_by_content_and_like(tmp_path):
    img = torch.randint(0, 256, (1, 6, 8), generator=torch.Generator().manual_seed(2)).float() / 255
    path = write_image(img, tmp_path / "subject99.happy", like="GIF")
    assert path.read_bytes()[:3] == b"GIF"
    assert torch.equal(read_image(path), img)
    copy = write_image(img, tmp_path / "subject99.sad", like=path)
    with Image.open(copy) as im:
        assert im.format == "GIF"
    with pytest.raises(ConfigError):
        write_image(img, tmp_path / "noext")
    with pytest.raises(InputError):
        write_image(img * 2, tmp_path / "bad.png")


def test_corrupt_or_missing_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="broken.png"):
        read_image(bad)
    good = tmp_path / "cut.png"
    write_image(torch.rand(3, 32, 32), good)
    good.write_bytes(good.read_bytes()[:100])
    with pytest.raises(DataError, match="cut.png"):
        read_image(good)
    with pytest.raises(DataError, match="missing.png"):
        read_image(tmp_path / "missing.png")


# ----------------------------------------------------------------------------- image folders


def test_folder_round_trip_natural_order_and_split(tmp_path):
    written = write_class_folders(tmp_path / "f", {c: [(5, 6)] * 5 for c in ("b", "a10", "a2")})
    (tmp_path / "f" / "README").write_text("not a class")
    (tmp_path / "f" / "a2" / "notes.txt").write_text("not an image")
    ds = load_dataset(f"folder:{tmp_path / 'f'}", test_fraction=0.4, seed=0)
    assert ds.classes == ["a2", "a10", "b"] and ds.input_shape == (3, 5, 6)
    assert torch.bincount(ds.y_test).tolist() == [2, 2, 2] and torch.bincount(ds.y_train).tolist() == [3] * 3
    x = torch.cat([ds.x_train, ds.x_test])
    y = torch.cat([ds.y_train, ds.y_test])
    got = {
        (int(label), (img * 255).round().to(torch.uint8).permute(1, 2, 0).numpy().tobytes())
        for img, label in zip(x, y, strict=True)
    }
    want = {(ds.classes.index(c), a.tobytes()) for c, arrs in written.items() for a in arrs}
    assert got == want
    same = load_dataset("folder", root=tmp_path / "f", test_fraction=0.4, seed=0)
    assert torch.equal(same.x_test, ds.x_test)


def test_folder_size_mismatch_resize_and_corrupt_image(tmp_path):
    write_class_folders(tmp_path / "f", {"a": [(5, 6), (5, 6)], "b": [(8, 8), (5, 6)]})
    with pytest.raises(DataError, match="differ in size"):
        load_dataset("folder", root=tmp_path / "f")
    ds = load_dataset("folder", root=tmp_path / "f", resize=(4, 3))
    assert ds.input_shape == (3, 4, 3)
    (tmp_path / "f" / "b" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(50)))
    with pytest.raises(DataError, match="zz_corrupt.png"):
        load_dataset("folder", root=tmp_path / "f", resize=4)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("folder", root=tmp_path / "nothing")


# ----------------------------------------------------------------------------- list_datasets


def test_list_datasets_reports_found_and_missing(isolated, monkeypatch):
    monkeypatch.setattr(registry, "network_available", lambda url, timeout=2.0: False)
    write_idx_set(isolated / "data" / "mnist")
    status = {s.name: s for s in list_datasets()}
    assert set(status) == {"digits", "fashion-mnist", "mnist", "orl", "yale", "cifar10"}
    assert status["digits"].available
    assert status["mnist"].available and status["mnist"].where == str(isolated / "data" / "mnist")
    assert not status["cifar10"].available
    assert "not found in" in status["cifar10"].where and status["cifar10"].where.endswith("no network")
    assert str(isolated / "data" / "cifar10") in status["cifar10"].where
    assert not status["fashion-mnist"].available
    monkeypatch.setattr(registry, "network_available", lambda url, timeout=2.0: True)
    assert "will download" in {s.name: s for s in list_datasets()}["cifar10"].where


# ----------------------------------------------------------------------------- real data (skip when absent)


@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion-mnist")


@needs_fashion
def test_fashion_mnist_official_split(fashion):
    assert fashion.x_train.shape == (60000, 1, 28, 28) and fashion.x_test.shape == (10000, 1, 28, 28)
    assert fashion.x_train.dtype == torch.float32 and fashion.y_train.dtype == torch.int64
    assert float(fashion.x_test.min()) == 0.0 and float(fashion.x_test.max()) == 1.0
    assert torch.bincount(fashion.y_train).tolist() == [6000] * 10
    assert torch.bincount(fashion.y_test).tolist() == [1000] * 10
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"
    assert torch.equal(fashion.x_train[0] * 255, (fashion.x_train[0] * 255).round())


@needs_fashion
def test_fashion_alias_and_train_per_class():
    ds = load_dataset("fmnist", train_per_class=20, resize=14)
    assert ds.name == "fashion-mnist" and ds.input_shape == (1, 14, 14)
    assert torch.bincount(ds.y_train).tolist() == [20] * 10 and len(ds.y_test) == 10000


@needs_orl
def test_orl_faces():
    ds = load_dataset("orl", seed=1)
    assert ds.input_shape == (1, 112, 92) and ds.num_classes == 40
    assert ds.classes[:3] == ["s1", "s2", "s3"] and ds.classes[-1] == "s40"
    assert torch.bincount(ds.y_train).tolist() == [5] * 40 and torch.bincount(ds.y_test).tolist() == [5] * 40
    folder = Path(ds.source)
    s10 = torch.stack([read_image(folder / "s10" / f"{i}.pgm") for i in range(1, 11)]).flatten(1)
    label = ds.classes.index("s10")
    mine = torch.cat([ds.x_train[ds.y_train == label], ds.x_test[ds.y_test == label]]).flatten(1)
    assert all(bool((s10 == row).all(1).any()) for row in mine)
    assert not torch.equal(ds.y_test, load_dataset("orl", seed=2).y_test)


@needs_yale
def test_yale_faces():
    ds = load_dataset("yale", resize=(61, 80))
    assert ds.input_shape == (1, 61, 80) and ds.num_classes == 15
    assert ds.classes[0] == "subject01" and ds.classes[-1] == "subject15"
    counts = torch.bincount(ds.y_train, minlength=15) + torch.bincount(ds.y_test, minlength=15)
    assert counts.sum() == 164 and counts[0] == 10 and set(counts[1:].tolist()) == {11}
    assert torch.bincount(ds.y_test).tolist() == [3] * 15
    img = read_image(Path(ds.source) / "subject01.glasses")
    assert img.shape == (1, 243, 320)
