"""nn.MLP.from_torch_state_dict / to_torch_state_dict against a real torch nn.Sequential."""

import numpy as np
import pytest

from fastclip import nn

torch = pytest.importorskip("torch")


def _torch_mlp(sizes, act, seed=0, bias=True):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1], bias=bias))
        if i < len(sizes) - 2:
            layers.append({"relu": torch.nn.ReLU(), "leaky_relu": torch.nn.LeakyReLU(0.1),
                           "prelu": torch.nn.PReLU(), "identity": torch.nn.Identity()}[act])
    seq = torch.nn.Sequential(*layers).double()
    if act == "prelu":
        with torch.no_grad():
            for k, mod in enumerate(m for m in seq if isinstance(m, torch.nn.PReLU)):
                mod.weight.fill_(0.1 + 0.2 * k)
    return seq


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "prelu", "identity"])
@pytest.mark.parametrize("sizes", [(5, 5, 5, 5), (6, 9, 4, 3)], ids=["square", "rect"])
def test_outputs_match_torch(act, sizes):
    seq = _torch_mlp(sizes, act)
    m = nn.MLP.from_torch_state_dict(seq.state_dict(), act, negative_slope=0.1)
    assert m.dtype == np.float64 and m.sizes == sizes
    x = np.random.default_rng(0).standard_normal((7, sizes[0]))
    want = seq(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(m(x), want, rtol=1e-12, atol=1e-12)
    # and back: the exported dict loads into torch and gives the same outputs again
    seq2 = _torch_mlp(sizes, act, seed=5)
    seq2.load_state_dict(m.to_torch_state_dict(tensors=True))
    np.testing.assert_allclose(seq2(torch.from_numpy(x)).detach().numpy(), want,
                               rtol=1e-12, atol=1e-12)
    sd = m.to_torch_state_dict()
    assert list(sd) == list(seq.state_dict())
    for k, v in seq.state_dict().items():
        assert isinstance(sd[k], np.ndarray) and np.array_equal(sd[k], v.numpy())


def test_square_layers_are_never_loaded_transposed():
    seq = _torch_mlp((4, 4, 4), "relu")
    m = nn.MLP.from_torch_state_dict(seq.state_dict())
    w = seq.state_dict()["0.weight"].numpy()
    assert not np.allclose(w, w.T)  # the test needs a non-symmetric weight
    np.testing.assert_array_equal(m.parameters()[0].data, w.T)  # torch (out, in) -> (in, out)
    x = np.random.default_rng(1).standard_normal((3, 4))
    np.testing.assert_allclose(m(x), seq(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)


def test_prefix_missing_bias_and_dtype():
    seq = _torch_mlp((3, 5, 2), "relu", bias=False)
    sd = {f"net.{k}": v.float() for k, v in seq.state_dict().items()}
    m = nn.MLP.from_torch_state_dict(sd)
    assert m.dtype == np.float32 and m.sizes == (3, 5, 2)
    assert all(not b.data.any() for b in m.parameters()[1::2])  # no bias: zero
    m64 = nn.MLP.from_torch_state_dict(sd, dtype=np.float64)
    assert m64.dtype == np.float64


def test_bad_state_dicts():
    sd = _torch_mlp((3, 5, 2), "relu").state_dict()
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        nn.MLP.from_torch_state_dict([1])
    bad = dict(sd)
    bad["2.weight"] = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"state_dict\['2.weight'\] has shape \(2, 4\) \(out, "
                                         r"in\) but the previous layer 0.weight has 5 outputs"):
        nn.MLP.from_torch_state_dict(bad)
    with pytest.raises(ValueError, match="holds PReLU weights .* pass activation='prelu'"):
        nn.MLP.from_torch_state_dict(_torch_mlp((3, 5, 2), "prelu").state_dict(), "relu")
    with pytest.raises(ValueError, match="activation='prelu' needs one PReLU"):
        nn.MLP.from_torch_state_dict(sd, "prelu")
    with pytest.raises(ValueError, match="only Linear and PReLU parameters"):
        nn.MLP.from_torch_state_dict({**sd, "1.running_mean": torch.zeros(5)})
    with pytest.raises(TypeError, match=r"state_dict\['0.weight'\] must be a real numeric"):
        nn.MLP.from_torch_state_dict({**sd, "0.weight": torch.zeros(5, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="holds no Linear layer"):
        nn.MLP.from_torch_state_dict({})


def _assert_same_model(net, sd, act="relu"):
    m = nn.MLP.from_torch_state_dict(sd, act)
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((5, m.sizes[0])))
    np.testing.assert_allclose(m(x.numpy()), net(x).detach().numpy(), rtol=1e-12, atol=1e-12)


def _blocks(n, width=4):
    """n square Linear+ReLU blocks, each an nn.Sequential, and a last Linear."""
    L = torch.nn.Linear
    return [torch.nn.Sequential(L(width, width), torch.nn.ReLU()) for _ in range(n)] + [
        L(width, width)]


@pytest.mark.parametrize("n", [2, 11], ids=["3-modules", "12-modules"])
@pytest.mark.parametrize("order", ["torch", "sorted-as-strings", "reversed"])
def test_nested_sequentials_load_in_forward_order(n, order):
    """A Sequential of Sequentials ("0.0", "1.0", ..., "n"): the layers are taken in
    forward order whatever the order of the keys; the layers are square, so only
    the outputs can tell a wrong order."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(*_blocks(n)).double()
    sd = net.state_dict()
    keys = {"torch": list(sd), "sorted-as-strings": sorted(sd),
            "reversed": list(reversed(sd))}[order]
    _assert_same_model(net, {k: sd[k] for k in keys})
    _assert_same_model(net, {f"model.net.{k}": sd[k] for k in keys})  # a common prefix


def test_torchvision_layout_loads_in_registration_order():
    """features.0 / features.2 / classifier.0 (torchvision's VGG/AlexNet layout): the
    names of the containers say nothing about their order, so the state_dict's order
    (torch's registration order) is kept, with the indices inside each container."""
    torch.manual_seed(0)
    L = torch.nn.Linear

    class Net(torch.nn.Module):
        def __init__(self, n_features):
            super().__init__()
            feats = []
            for _ in range(n_features):
                feats += [L(4, 4), torch.nn.ReLU()]
            self.features = torch.nn.Sequential(*feats)
            self.classifier = torch.nn.Sequential(L(4, 4), torch.nn.ReLU(), L(4, 4))

        def forward(self, x):
            return self.classifier(self.features(x))

    for n_features in (2, 6):  # features.10 with 6
        net = Net(n_features).double()
        sd = net.state_dict()
        assert list(sd)[0] == "features.0.weight"
        _assert_same_model(net, sd)
        # the indices inside each container are ordered even if the keys were not
        feats = [k for k in sd if k.startswith("features.")]
        rest = [k for k in sd if not k.startswith("features.")]
        _assert_same_model(net, {k: sd[k] for k in sorted(feats) + sorted(rest)})


def test_flat_sequential_in_any_key_order():
    """A flat Sequential of more than 10 modules: "10" sorts before "2" as a string,
    and the keys may come in any order."""
    sizes = (3, 4, 5, 6, 7, 6, 5, 4, 3, 4, 5, 2)  # 11 Linear: modules "0" to "20"
    seq = _torch_mlp(sizes, "prelu")
    sd = seq.state_dict()
    rng = np.random.default_rng(0)
    for keys in (list(sd), sorted(sd), [list(sd)[i] for i in rng.permutation(len(sd))]):
        m = nn.MLP.from_torch_state_dict({k: sd[k] for k in keys}, "prelu")
        assert m.sizes == sizes
        _assert_same_model(seq, {k: sd[k] for k in keys}, "prelu")


def test_siblings_not_all_numbered_keep_the_dict_order():
    """Siblings that are not all numbered ("2", "head", "1") cannot be ordered by
    their names: the state_dict's order decides, as torch registered them."""
    from collections import OrderedDict

    torch.manual_seed(0)
    L = torch.nn.Linear
    net = torch.nn.Sequential(OrderedDict([("2", L(4, 4)), ("r2", torch.nn.ReLU()),
                                           ("head", L(4, 4)), ("r", torch.nn.ReLU()),
                                           ("1", L(4, 4))])).double()
    sd = net.state_dict()
    assert list(sd) == ["2.weight", "2.bias", "head.weight", "head.bias", "1.weight",
                        "1.bias"]
    _assert_same_model(net, sd)
    nested = torch.nn.Sequential(net, torch.nn.ReLU(), L(4, 4)).double()
    _assert_same_model(nested, nested.state_dict())
