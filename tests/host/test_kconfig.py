"""nltrace's config fragment and the check nltrace build makes with it."""

import gzip

from nltrace import kconfig


def test_the_fragment_sets_every_required_option():
    for release in ("5.10.0", "6.12.57"):
        wanted = kconfig.wanted(release)
        assert all(wanted.get(option) == "y" for option in kconfig.REQUIRED), wanted


def test_modules_only_before_6_10():
    assert kconfig.wanted("5.10.244").get("CONFIG_MODULES") == "y"
    assert kconfig.wanted("6.9.12").get("CONFIG_MODULES") == "y"
    assert "CONFIG_MODULES" not in kconfig.wanted("6.10.0")
    assert "CONFIG_MODULES" not in kconfig.wanted("6.12.57+")


def test_parse_reads_set_and_unset_options():
    config = kconfig.parse("# comment\nCONFIG_KPROBES=y\n# CONFIG_FTRACE is not set\nCONFIG_LOCALVERSION=\"-x\"\n")
    assert config == {"CONFIG_KPROBES": "y", "CONFIG_FTRACE": "n", "CONFIG_LOCALVERSION": '"-x"'}


def test_differences_name_the_required_options_first():
    config = {o: "y" for o in kconfig.wanted("6.12.0")}
    del config["CONFIG_KPROBES"]
    config["CONFIG_BPF_JIT"] = "n"
    config["CONFIG_DEBUG_INFO_REDUCED"] = "y"
    diffs = kconfig.differences(config, "6.12.0")
    assert diffs[0] == ("CONFIG_KPROBES", "y", "n")
    assert set(diffs[1:]) == {("CONFIG_BPF_JIT", "y", "n"), ("CONFIG_DEBUG_INFO_REDUCED", "n", "y")}
    assert kconfig.differences(kconfig.wanted("5.10.0"), "5.10.0") == []


def test_config_is_read_beside_the_vmlinux_then_from_the_image(tmp_path):
    vmlinux = tmp_path / "vmlinux"
    text = "CONFIG_KPROBES=y\n# CONFIG_BPF_JIT is not set\n"
    # the layout kernel/configs.c gives the embedded config
    vmlinux.write_bytes(b"\x7fELF..." + b"IKCFG_ST" + gzip.compress(text.encode()) + b"IKCFG_ED" + b"...")
    config, source = kconfig.read_config(str(vmlinux))
    assert config == {"CONFIG_KPROBES": "y", "CONFIG_BPF_JIT": "n"} and "embedded" in source
    (tmp_path / ".config").write_text("CONFIG_KPROBES=n\n")
    assert kconfig.read_config(str(vmlinux)) == ({"CONFIG_KPROBES": "n"}, str(tmp_path / ".config"))
    other = tmp_path / "other.config"
    other.write_text("CONFIG_BPF_JIT=y\n")
    assert kconfig.read_config(str(vmlinux), str(other)) == ({"CONFIG_BPF_JIT": "y"}, str(other))


def test_no_config_anywhere_is_none(tmp_path):
    vmlinux = tmp_path / "vmlinux"
    vmlinux.write_bytes(b"\x7fELF without a config")
    assert kconfig.read_config(str(vmlinux)) is None
