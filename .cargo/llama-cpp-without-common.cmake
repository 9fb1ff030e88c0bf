# Read by CMake after each project() of llama.cpp's build (CMAKE_PROJECT_INCLUDE in
# .cargo/config.toml, which llama-cpp-sys-2 forwards to CMake like every CMAKE_* variable).
#
# llama-cpp-2 turns on llama-cpp-sys-2's default features, `common` among them, although we
# build llama-cpp-2 without `common` and never call it. llama.cpp's common library (its command
# line, chat parsers, Jinja engine, downloader and an HTTP library) took about 180 of the 450
# seconds llama.cpp took to compile on 2 cores; this leaves it out. The sys crate links the
# library only when CMake built it, and nothing of ours references its wrapper.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)
