# Warnings, sanitizers and the common setup of evdispatch's libraries.

# Warnings apply to evdispatch's own sources only: PRIVATE compile options of its libraries,
# and the interface target evdispatch_warnings for its executables (never exported).
set(EVDISPATCH_WARNING_FLAGS -Wall -Wextra -Wpedantic -Wshadow -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    # g++ 12 reports impossible overlaps in std::string's inlined memcpy at -O2 (GCC bug
    # 105651); the code it points at is libstdc++'s.
    list(APPEND EVDISPATCH_WARNING_FLAGS -Wno-restrict)
endif()
if(EVDISPATCH_WERROR)
    list(APPEND EVDISPATCH_WARNING_FLAGS -Werror)
endif()
add_library(evdispatch_warnings INTERFACE)
target_compile_options(evdispatch_warnings INTERFACE ${EVDISPATCH_WARNING_FLAGS})

# Sanitizers instrument every translation unit of the build (an uninstrumented one would lend
# its copies of inline functions, e.g. shared_ptr's release, to the whole binary and hide
# synchronisation from TSan).
if(EVDISPATCH_SANITIZE)
    add_compile_options(-fsanitize=${EVDISPATCH_SANITIZE} -fno-omit-frame-pointer
        -fno-sanitize-recover=all)
    add_link_options(-fsanitize=${EVDISPATCH_SANITIZE})
    if(EVDISPATCH_SANITIZE MATCHES "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        # Asio uses atomic_thread_fence; g++ 12 warns that TSan does not model it.
        add_compile_options(-Wno-tsan)
    endif()
endif()

# evdispatch_setup_library(<target> <export name>): alias evdispatch::<export name>, C++20,
# public headers from include/, private ones from src/, warnings, version.
function(evdispatch_setup_library target export_name)
    add_library(evdispatch::${export_name} ALIAS ${target})
    set_target_properties(${target} PROPERTIES
        EXPORT_NAME ${export_name}
        VERSION ${PROJECT_VERSION}
        SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
        POSITION_INDEPENDENT_CODE ON)
    target_compile_features(${target} PUBLIC cxx_std_20)
    target_include_directories(${target}
        PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:include>
        PRIVATE ${PROJECT_SOURCE_DIR}/src)
    target_compile_options(${target} PRIVATE ${EVDISPATCH_WARNING_FLAGS})
endfunction()
