"""fastclip.save / fastclip.load: .npz + JSON header, no pickle, bit-identical resumption."""

import json
import zipfile

import numpy as np
import pytest

import fastclip
from fastclip import nn, optim, schedules


def _batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((8, 6)), rng.integers(0, 3, 8)) for _ in range(n)]


def _step(m, opt, xb, yb):
    _, d = nn.softmax_cross_entropy(m(xb.astype(m.dtype)), yb)
    m.backward(d, input_grad=False)
    opt.step()
    opt.zero_grad()


OPTS = [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, clip_norm=0.5)),
    (optim.Adam, dict(lr=schedules.warmup_cosine(peak_value=0.01, warmup_steps=2, decay_steps=20), amsgrad=True, clip_norm=0.5)),
    (optim.AdamW, dict(lr=0.01, betas=(0.8, 0.99), clip_value=0.05)),
    (optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.5)),
]


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("cls", "kw"), OPTS, ids=[c.__name__ for c, _ in OPTS])
@pytest.mark.parametrize("activation", ["relu", "prelu"])
def test_round_trip_gives_bit_identical_next_steps(tmp_path, impl, dtype, cls, kw, activation):
    batches = _batches(6)
    with fastclip.use_implementation(impl):
        m = nn.MLP([6, 10, 7, 3], activation, dtype=dtype, rng=1)
        opt = cls(m.parameters(), **kw)
        for xb, yb in batches[:3]:
            _step(m, opt, xb, yb)
        opt.lr_scale = 0.5
        path = tmp_path / "ckpt.npz"
        fastclip.save({"model": m, "optimizer": opt}, path)
        got = fastclip.load(path)
        assert list(got) == ["model", "optimizer"]
        m2, opt2 = got["model"], got["optimizer"]
        assert m2 is not m and type(opt2) is cls
        assert all(a is p.data for a, p in zip(opt2.params, m2.parameters()))
        assert opt2.step_count == 3 and opt2.lr_scale == 0.5
        for xb, yb in batches[3:]:
            _step(m, opt, xb, yb)
            _step(m2, opt2, xb, yb)
        for p, q in zip(m.parameters(), m2.parameters()):
            assert p.data.dtype == q.data.dtype
            assert p.data.tobytes() == q.data.tobytes()  # bit for bit
        for a, b in zip(opt.state_dict()["state"], opt2.state_dict()["state"]):
            for k in a:
                assert a[k].tobytes() == b[k].tobytes()


def test_model_and_optimizer_alone(tmp_path):
    m = nn.Linear(4, 3, "leaky_relu", negative_slope=0.2, dtype=np.float64, rng=0)
    fastclip.save(m, tmp_path / "m.npz")
    m2 = fastclip.load(tmp_path / "m.npz")
    assert type(m2) is nn.Linear and m2.activation == "leaky_relu"
    assert m2._blocks[0].negative_slope == 0.2
    for p, q in zip(m.parameters(), m2.parameters()):
        assert np.array_equal(p.data, q.data)
    w = [np.ones(3), np.zeros((2, 2))]
    opt = optim.Adam(w, lr=0.1)
    opt.step([np.ones(3), np.ones((2, 2))])
    fastclip.save(opt, tmp_path / "o.npz")
    opt2 = fastclip.load(tmp_path / "o.npz")
    assert [p.tobytes() for p in opt2.params] == [p.tobytes() for p in w]
    g = [np.full(3, 0.5), np.full((2, 2), -1.0)]
    opt.step(g)
    opt2.step(g)
    assert [p.tobytes() for p in opt2.params] == [p.tobytes() for p in w]


def test_the_file_is_plain_npz_with_a_json_header_and_no_pickle(tmp_path):
    m = nn.MLP([3, 4, 2], rng=0)
    fastclip.save({"model": m, "optimizer": optim.SGD(m.parameters(), lr=0.1)}, tmp_path / "c")
    path = tmp_path / "c.npz"  # NumPy appends the suffix
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(z["__fastclip__"].tobytes())
        assert all(z[k].dtype != object for k in z.files)
    assert header["format"] == "fastclip" and header["version"] == 1
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            assert b"\x80\x04" not in zf.read(name)[:200] or name.endswith(".npy")


def _write(path, header, **arrays):
    raw = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, __fastclip__=raw, **arrays)


def test_untrusted_files_execute_nothing_and_raise_value_error(tmp_path):
    # an object array (what pickle would carry) is refused by allow_pickle=False
    np.savez(tmp_path / "pickled.npz", __fastclip__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        fastclip.load(tmp_path / "pickled.npz")
    np.savez(tmp_path / "plain.npz", x=np.ones(3))
    with pytest.raises(ValueError, match="not a valid fastclip file: .* has no __fastclip__"):
        fastclip.load(tmp_path / "plain.npz")
    bad_type = {"format": "fastclip", "version": 1,
                "root": {"model": {"type": "os.system", "config": {}, "params": {}}}}
    _write(tmp_path / "t.npz", bad_type)
    with pytest.raises(ValueError, match="unknown model type 'os.system'"):
        fastclip.load(tmp_path / "t.npz")
    bad_opt = {"format": "fastclip", "version": 1,
               "root": {"optimizer": {"type": "__import__", "lr": 0.1}}}
    _write(tmp_path / "o.npz", bad_opt)
    with pytest.raises(ValueError, match="unknown optimiser type '__import__'"):
        fastclip.load(tmp_path / "o.npz")
    _write(tmp_path / "v.npz", {"format": "fastclip", "version": 99, "root": {}})
    with pytest.raises(ValueError, match="version 99 is not supported"):
        fastclip.load(tmp_path / "v.npz")
    m = nn.MLP([3, 2], rng=0)
    fastclip.save(m, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        header = json.loads(z["__fastclip__"].tobytes())
        arrays = {k: z[k] for k in z.files if k != "__fastclip__"}
    header["root"]["model"]["params"]["0.weight"] = "a1"  # the bias's array for the weight
    _write(tmp_path / "s.npz", header, **arrays)
    with pytest.raises(ValueError, match=r"not a valid fastclip file: model: state\['0.weight'\] "
                                         r"has shape \(2,\)"):
        fastclip.load(tmp_path / "s.npz")
    header["root"]["model"]["params"]["0.weight"] = "zz"
    _write(tmp_path / "s.npz", header, **arrays)
    with pytest.raises(ValueError, match="parameter '0.weight' names no array of the file"):
        fastclip.load(tmp_path / "s.npz")


def test_what_cannot_be_saved_raises_type_error(tmp_path):
    m = nn.MLP([3, 2], rng=0)
    with pytest.raises(TypeError, match="only a number or a fastclip.schedules schedule"):
        fastclip.save(optim.SGD(m.parameters(), lr=lambda t: 0.1), tmp_path / "x.npz")
    with pytest.raises(TypeError, match=r"obj is a list; save takes a fastclip model"):
        fastclip.save([m], tmp_path / "x.npz")
    with pytest.raises(TypeError, match=r"obj\['x'\] is a int"):
        fastclip.save({"m": m, "x": 3}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="obj's keys must be strings"):
        fastclip.save({1: m}, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("kw", [
    {"batchnorm": True},
    {"dropout": 0.5},
    {"batchnorm": True, "dropout": 0.25, "bn_eps": 1e-3, "bn_momentum": None},
])
def test_batchnorm_and_dropout_models_round_trip(tmp_path, kw):
    """Batch normalisation (its parameters, eps, momentum and running statistics) and
    dropout survive save/load: the reloaded model is the same model."""
    m = nn.MLP([4, 8, 8, 3], rng=0, **kw)
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    m.forward(x)
    m.forward(x)  # running statistics that are not the initial ones
    path = tmp_path / "m.npz"
    fastclip.save(m, path)
    m2 = fastclip.load(path)
    assert repr(m2) == repr(m)
    assert m2.batchnorm == m.batchnorm and m2.dropout == m.dropout
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert list(sd) == list(sd2)
    for k in sd:
        assert np.array_equal(sd[k], sd2[k]) and sd[k].dtype == sd2[k].dtype, k
    for a, b in zip(m._blocks, m2._blocks):
        assert type(a) is type(b)
        if hasattr(a, "eps"):
            assert (a.eps, a.momentum) == (b.eps, b.momentum)
    m.eval()
    m2.eval()
    assert np.array_equal(m.forward(x), m2.forward(x))


def test_empty_truncated_and_foreign_files_raise_value_error(tmp_path):
    """A damaged file is a ValueError, as documented, whose message does not suggest
    allow_pickle; a missing file stays an OSError."""
    path = tmp_path / "m.npz"
    fastclip.save(nn.MLP([4, 8, 3], rng=0), path)
    raw = path.read_bytes()
    for name, data in [("empty", b""), ("half", raw[: len(raw) // 2]),
                       ("garbage", b"hello world" * 10), ("cut", raw[:-30])]:
        p = tmp_path / f"{name}.npz"
        p.write_bytes(data)
        with pytest.raises(ValueError, match="not a valid fastclip file") as info:
            fastclip.load(p)
        assert "pickle" not in str(info.value), name
    npy = tmp_path / "a.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(ValueError, match="single .npy array"):
        fastclip.load(npy)
    with pytest.raises(FileNotFoundError):
        fastclip.load(tmp_path / "missing.npz")


def test_reduce_on_plateau_lr_round_trips_with_its_state(tmp_path):
    """An optimiser driven by reduce_on_plateau (the schedule fit's docs suggest for a
    callback) is saved with the schedule's state; saved beside it in the dict, the
    schedule comes back as the loaded optimiser's lr object, so stepping it drives the
    optimiser as before."""
    from fastclip import schedules as S

    m = nn.MLP([3, 4, 2], rng=0)
    sched = S.reduce_on_plateau(0.1, patience=0)
    opt = optim.SGD(m.parameters(), lr=sched)
    sched.step(1.0), sched.step(2.0)
    path = tmp_path / "ckpt.npz"
    fastclip.save({"model": m, "opt": opt, "plateau": sched, "cos": S.cosine(0.1, 100)}, path)
    d = fastclip.load(path)
    assert list(d) == ["model", "opt", "plateau", "cos"]
    assert d["plateau"] is d["opt"]._lr and d["opt"].lr == opt.lr
    assert d["plateau"].state_dict() == sched.state_dict()
    assert d["cos"](50) == S.cosine(0.1, 100)(50)
    assert d["plateau"].step(5.0) == sched.step(5.0) and d["opt"].lr == opt.lr
    fastclip.save(opt, path)
    alone = fastclip.load(path)
    assert alone._lr.state_dict() == sched.state_dict() and alone._lr is not sched
    with pytest.raises(TypeError, match="schedule"):
        fastclip.save(sched, path)
