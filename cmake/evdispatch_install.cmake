# Installation and the package configuration: find_package(evdispatch) gives
# evdispatch::evdispatch, evdispatch::optimizely, evdispatch::collector and evdispatch::relay,
# and evdispatch::kafka when it was built (EVDISPATCH_KAFKA).

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(EVDISPATCH_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/evdispatch)

set(evdispatch_installed_targets evdispatch evdispatch_optimizely evdispatch_collector
    evdispatch_relay)
if(TARGET evdispatch_kafka)
    list(APPEND evdispatch_installed_targets evdispatch_kafka)
endif()
install(TARGETS ${evdispatch_installed_targets}
    EXPORT evdispatch-targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET evdispatch_cli)
    install(TARGETS evdispatch_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

install(EXPORT evdispatch-targets NAMESPACE evdispatch:: DESTINATION ${EVDISPATCH_CMAKE_DIR})
# The build tree is a package too: find_package(evdispatch) with evdispatch_DIR=<build dir>.
export(EXPORT evdispatch-targets NAMESPACE evdispatch::
    FILE ${PROJECT_BINARY_DIR}/evdispatch-targets.cmake)

math(EXPR EVDISPATCH_BOOST_NEXT_MINOR "${Boost_VERSION_MINOR} + 1")
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/evdispatch-config.cmake.in
    ${PROJECT_BINARY_DIR}/evdispatch-config.cmake
    INSTALL_DESTINATION ${EVDISPATCH_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/evdispatch-config-version.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/evdispatch-config.cmake
    ${PROJECT_BINARY_DIR}/evdispatch-config-version.cmake
    DESTINATION ${EVDISPATCH_CMAKE_DIR})
