/* Definitions cppcheck needs for macros from headers it does not read. */
#define LIBBPF_OPTS(TYPE, NAME, ...) struct TYPE NAME = { 0 }
#define json_object_foreach(object, key, value) for (key = 0, value = 0; key;)
#define json_array_foreach(array, index, value) for (index = 0, value = 0; index < 0;)
