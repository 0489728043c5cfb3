# plexus_add_plugin(<name> SOURCES <file>... [OUTPUT_DIRECTORY <dir>] [INSTALL])
#
# Builds a Plexus plugin: a shared library named libplexus_<name>.so that links only the SDK,
# exports only its manifest, and that a worker finds by the plugin name on its plugin path.
# <name> must match the first argument of PLEXUS_PLUGIN() in the sources.
function(plexus_add_plugin name)
  cmake_parse_arguments(ARG "INSTALL" "OUTPUT_DIRECTORY;INSTALL_DESTINATION" "SOURCES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "plexus_add_plugin(${name}): SOURCES is required")
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  if(TARGET Plexus::sdk)
    target_link_libraries(${name} PRIVATE Plexus::sdk)
  else()
    target_link_libraries(${name} PRIVATE plexus_sdk)
  endif()
  set_target_properties(${name} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME "plexus_${name}"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_compile_features(${name} PRIVATE cxx_std_20)
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  endif()
  if(ARG_INSTALL)
    if(NOT ARG_INSTALL_DESTINATION)
      set(ARG_INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/plexus/plugins)
    endif()
    install(TARGETS ${name} LIBRARY DESTINATION ${ARG_INSTALL_DESTINATION})
  endif()
endfunction()
