# Writes a C file defining `const char NAME[]` (the bytes of INPUT, NUL-
# terminated) and `const size_t NAME_len`. Run at build time:
#   cmake -DINPUT=status_page.html -DOUTPUT=status_page.c -DNAME=keel_status_page -P embed_file.cmake
file(READ ${INPUT} hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUTPUT} "/* Generated from ${INPUT} by embed_file.cmake: do not edit. */\n"
     "#include <stddef.h>\n"
     "const char ${NAME}[] = {\n${bytes}0x00 };\n"
     "const size_t ${NAME}_len = ${len};\n")
