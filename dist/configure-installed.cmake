# Run by `cmake --install` (dist/CMakeLists.txt, keel_install_configured):
# writes KEEL_OUTPUT from KEEL_TEMPLATE, replacing @prefix@, @bindir@,
# @libdir@, @includedir@, @sysconfdir@, @docdir@ and @KEEL_VERSION@ with the
# paths of this install. It runs at install time because only then is the
# prefix known: `cmake --install build --prefix /usr` must write /usr into
# keeldriver.pc and the units, whatever the build was configured with.
# KEEL_BINDIR and the others are GNUInstallDirs' dirs as configured:
# relative ones are taken under the prefix; sysconfdir is /etc for the
# prefix /usr, as GNUInstallDirs has it.
cmake_policy(VERSION 3.18)
set(prefix "${CMAKE_INSTALL_PREFIX}")
foreach(dir bindir libdir includedir docdir sysconfdir)
  string(TOUPPER "${dir}" var)
  if(IS_ABSOLUTE "${KEEL_${var}}")
    set(${dir} "${KEEL_${var}}")
  elseif(dir STREQUAL "sysconfdir" AND prefix STREQUAL "/usr")
    set(${dir} "/${KEEL_${var}}")
  else()
    set(${dir} "${prefix}/${KEEL_${var}}")
  endif()
endforeach()
configure_file("${KEEL_TEMPLATE}" "${KEEL_OUTPUT}" @ONLY)
