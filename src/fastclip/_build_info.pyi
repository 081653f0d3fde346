# Stub of fastclip/_build_info.py, which CMake generates at build time from
# _build_info.py.in (build facts reported by fastclip.show_config()).
openmp: bool
openmp_version: str
simd_dispatch: bool
sanitize: bool
compiler: str
build_type: str
c_flags: str
system: str
