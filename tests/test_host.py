"""fer_jax.host.cpu_description: two hosts that /proc/cpuinfo's model name alone cannot tell apart get
different descriptions; cpuinfo without x86 fields falls back to the model name or the platform's."""

from __future__ import annotations

import platform

from fer_jax.host import cpu_description


def _cpuinfo(family: int, model: int, flags: str, cores: int = 2) -> str:
    block = (
        "processor\t: {i}\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        "model name\t: AMD EPYC\nflags\t\t: {flags}\npower management:\n"
    )
    return "\n".join(block.format(i=i, family=family, model=model, flags=flags) for i in range(cores))


def test_hosts_with_one_model_name_are_told_apart():
    zen5 = cpu_description(_cpuinfo(26, 2, "fpu sse2 avx avx2 avx512f avx512bw"))
    older = cpu_description(_cpuinfo(23, 49, "fpu sse2 avx avx2"))
    assert zen5 == "AMD EPYC (family 26 model 2, AVX-512)"
    assert older == "AMD EPYC (family 23 model 49, AVX2)"
    assert cpu_description(_cpuinfo(6, 85, "fpu sse2")).endswith("(family 6 model 85, no AVX2)")


def test_only_the_first_processor_block_is_read():
    mixed = _cpuinfo(26, 2, "avx2 avx512f", cores=1) + "\n\n" + _cpuinfo(23, 49, "avx2", cores=1)
    assert cpu_description(mixed) == "AMD EPYC (family 26 model 2, AVX-512)"


def test_cpuinfo_without_x86_fields_falls_back():
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n"
    assert cpu_description(arm) == (platform.processor() or platform.machine())
    assert cpu_description("model name\t: Some CPU\n") == "Some CPU"
    assert cpu_description("") == (platform.processor() or platform.machine())
