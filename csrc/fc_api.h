/*
 * fastclip: which declarations the kernels library exports.
 *
 * The kernels are one shared library that every extension module links. It is
 * compiled with hidden visibility, so only the declarations between
 * FC_API_BEGIN and FC_API_END (the functions the Cython bindings call) are
 * exported; helpers shared between the library's own files stay internal.
 * On Windows CMake exports the library's functions (WINDOWS_EXPORT_ALL_SYMBOLS).
 */
#ifndef FASTCLIP_API_H
#define FASTCLIP_API_H

#if defined(FASTCLIP_KERNELS_BUILD) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(_WIN32)
#define FC_API_BEGIN _Pragma("GCC visibility push(default)")
#define FC_API_END _Pragma("GCC visibility pop")
#else
#define FC_API_BEGIN
#define FC_API_END
#endif

#endif /* FASTCLIP_API_H */
