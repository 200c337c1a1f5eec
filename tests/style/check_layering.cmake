# check_layering.cmake: the layering rules of CMakeLists.txt as tests (cmake -P).
#   MODE=symbols: no object of a pure library (stun, auth without the store, allocation, qos,
#     the PROXY protocol decoder)
#     references a socket, clock, file, thread or stdio symbol (nm -u on the archives).
#   MODE=links: every tern_* library links only the layers below it (LINKS file written by
#     tests/CMakeLists.txt at configure time from each target's LINK_LIBRARIES).

cmake_minimum_required(VERSION 3.20)

# What a pure library may not call: the relay's I/O, the clock, files, threads, name lookup,
# stdio. snprintf, inet_ntop, gmtime_r (a conversion) and OpenSSL are fine.
set(DENY
  socket bind connect listen accept accept4 send sendto sendmsg sendmmsg recv recvfrom recvmsg
  recvmmsg shutdown setsockopt getsockopt epoll_create epoll_create1 epoll_ctl epoll_wait
  epoll_pwait poll ppoll select pselect eventfd
  clock_gettime clock_nanosleep time gettimeofday
  open open64 openat openat64 fopen fopen64 fdopen creat read write pread pwrite readv writev
  close ioctl fcntl getrandom sleep usleep nanosleep pthread_create pthread_join getaddrinfo
  getnameinfo gethostbyname
  printf vprintf fprintf vfprintf puts fputs fputc putchar fwrite perror syslog stdout stderr
  __printf_chk __fprintf_chk __vfprintf_chk __read_chk __open_2 __openat_2)

# The tern_* libraries each library may link (external libraries are listed too, so that a pure
# library cannot pick up a thread, database or network library either).
set(ALLOW_tern_stun OpenSSL::Crypto ZLIB::ZLIB)
set(ALLOW_tern_auth tern_stun OpenSSL::Crypto PkgConfig::IDN)
set(ALLOW_tern_allocation tern_auth tern_stun)
set(ALLOW_tern_qos tern_stun PkgConfig::JANSSON m)
set(ALLOW_tern_store tern_stun tern_auth SQLite::SQLite3 PkgConfig::PQ OpenSSL::Crypto)
set(ALLOW_tern_config tern_stun PkgConfig::YAML)
set(ALLOW_tern_proxyproto tern_stun)
set(ALLOW_tern_relay tern_allocation tern_auth tern_stun tern_qos tern_config tern_store tern_proxyproto
  PkgConfig::LIBBPF PkgConfig::JANSSON OpenSSL::SSL OpenSSL::Crypto Threads::Threads curl)
set(ALLOW_tern_uris tern_config tern_auth tern_store tern_stun OpenSSL::Crypto PkgConfig::JANSSON)
set(ALLOW_tern_ops tern_relay tern_uris tern_store tern_config tern_auth tern_stun
  PkgConfig::MHD PkgConfig::JANSSON OpenSSL::Crypto)

set(failed 0)
if(MODE STREQUAL "symbols")
  if(NOT NM OR NOT PURE_LIBS)
    message(FATAL_ERROR "usage: cmake -DMODE=symbols -DNM=nm -DPURE_LIBS=a.a,b.a -P ${CMAKE_SCRIPT_MODE_FILE}")
  endif()
  string(REPLACE "," ";" libs "${PURE_LIBS}")
  foreach(lib ${libs})
    execute_process(COMMAND ${NM} -A -u ${lib} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(SEND_ERROR "${NM} -u ${lib} failed (${rc})")
      set(failed 1)
      continue()
    endif()
    get_filename_component(libname ${lib} NAME)
    string(REPLACE "\n" ";" lines "${out}")
    set(nsyms 0)
    foreach(line ${lines})
      # "path/libx.a:obj.c.o:                 U symbol"
      if(line MATCHES "^(.*):([^:]+):[ \t]+U[ \t]+([^ \t@]+)")
        math(EXPR nsyms "${nsyms} + 1")
        set(obj ${CMAKE_MATCH_2})
        set(sym ${CMAKE_MATCH_3})
        if(sym IN_LIST DENY)
          message("FAIL: ${libname}: ${obj} references ${sym}")
          set(failed 1)
        endif()
      endif()
    endforeach()
    message("${libname}: ${nsyms} undefined references checked")
  endforeach()
elseif(MODE STREQUAL "links")
  if(NOT LINKS)
    message(FATAL_ERROR "usage: cmake -DMODE=links -DLINKS=file -P ${CMAKE_SCRIPT_MODE_FILE}")
  endif()
  include(${LINKS}) # sets TERN_LIBS and LINKS_<target>
  foreach(t ${TERN_LIBS})
    if(NOT DEFINED ALLOW_${t})
      message("FAIL: ${t}: a tern library this check does not know; add it to ALLOW_ here")
      set(failed 1)
      continue()
    endif()
    foreach(dep ${LINKS_${t}})
      string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" dep "${dep}")
      if(NOT dep IN_LIST ALLOW_${t})
        message("FAIL: ${t} links ${dep}; allowed: ${ALLOW_${t}}")
        set(failed 1)
      endif()
    endforeach()
    message("${t}: ${LINKS_${t}}")
  endforeach()
else()
  message(FATAL_ERROR "MODE must be symbols or links")
endif()
if(failed)
  message(FATAL_ERROR "layering violated (see FAIL lines)")
endif()
