"""The compiled machine code of the GEMM versions does what their headers promise (python -m minunet.sass).

No GPU needed: NVRTC compiles as CuPy would, nvdisasm (the nvidia-cuda-nvdisasm wheel) disassembles.
"""
import collections

import pytest

from minunet import nvrtc, sass

pytestmark = pytest.mark.skipif(sass.nvdisasm_path() is None, reason="nvdisasm not installed (nvidia-cuda-nvdisasm)")


@pytest.fixture(scope="module")
def conv3x3_float():
    return sass.kernel_code("conv3x3", "sm_80", "float")


@pytest.mark.parametrize("stem, kernel, fma, lds", [
    ("conv3x3", "conv3x3_forward_v3", 256, 80), ("conv3x3", "conv3x3_grad_input_v3", 256, 80),
    ("conv3x3", "conv3x3_grad_weight_v3", 256, 80), ("conv3x3", "conv3x3_forward_v4", 1024, 160),
    ("conv1x1", "conv1x1_forward_v2", 256, 80), ("up_conv2x2", "up_conv2x2_grad_weight_v2", 256, 80)])
def test_the_gemm_tile_loads_a_row_block_with_one_instruction(stem, kernel, fma, lds):
    # gemm_tile.cuh: per kk, TM x TN multiply-adds fed by TM/4 16-byte loads (the thread's TM rows are
    # contiguous) + TN scalar loads (its columns are interleaved by 16); 16 kk per step of the k loop.
    code = sass.kernel_code(stem, "sm_80", "float")[kernel]
    tm = {256: 4, 1024: 8}[fma]
    assert code.loop["FFMA"] == fma and code.loop["LDS"] == lds, code.loop
    assert code.loop_vector_loads == 16 * tm // 4
    assert code.loop["BAR"] == 2  # one __syncthreads after the slice is staged, one before it is overwritten


def test_the_conv3x3_ladder_climbs(conv3x3_float):
    share = {v: conv3x3_float[f"conv3x3_forward_v{v}"].loop_fma_share for v in (1, 2, 3, 4)}
    assert share[1] < share[2] < share[3] < share[4], share
    assert share[4] > 0.6  # measured 68% on sm_80 (NVRTC 13.0): the rest is index arithmetic and loads
    tf32 = conv3x3_float["conv3x3_forward_v5"].loop
    assert tf32["HMMA"] > 0 and tf32["FFMA"] == 0


@pytest.mark.parametrize("dtype", ["float", "double"])
def test_no_kernel_uses_local_memory(dtype):
    # Local memory (LDL/STL) means spills, or a per-thread array indexed in a way the compiler cannot unroll.
    for path in nvrtc.kernel_files():
        for kernel, code in sass.kernel_code(path.stem, "sm_80", dtype).items():
            assert code.instructions["LDL"] == code.instructions["STL"] == 0, f"{kernel} ({dtype}) uses local memory"


def test_the_listing_parser_finds_the_loop_with_the_most_multiply_adds():
    listing = """
        .section .text.toy,"ax",@progbits
toy:
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_0:
        /*0010*/                   LDS.U.128 R4, [R2] ;
        /*0020*/                   FFMA R8, R4, R5, R8 ;
        /*0030*/              @!P0 BRA `(.L_x_0) ;
.L_x_1:
        /*0040*/                   FFMA R8, R4, R5, R8 ;
        /*0050*/                   FFMA R9, R4, R5, R9 ;
        /*0060*/                   LDS R4, [R3] ;
        /*0070*/               @P1 BRA `(.L_x_1) ;
        /*0080*/                   BRA `(.L_x_2) ;
.L_x_2:
        /*0090*/                   EXIT ;
"""
    code = sass.analyse(listing)["toy"]
    assert code.loop == collections.Counter(FFMA=2, LDS=1, BRA=1) and code.loop_vector_loads == 0
    assert code.loop_fma_share == 0.5 and sum(code.instructions.values()) == 10


def test_a_missing_disassembler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sass, "nvdisasm_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install nvidia-cuda-nvdisasm"):
        sass.disassemble(b"")


def test_the_command_line(capsys):
    assert sass.main(["sgd", "--arch", "sm_80"]) == 0
    out = capsys.readouterr().out
    assert "sgd_step_v1" in out and "FMA share" in out
    assert sass.main(["no_such_kernel"]) == 2
    assert "no_such_kernel" in capsys.readouterr().err
