/* Files bnc writes and directories it keeps private state in.
 *
 * Writing an output file safely: into a private temporary file beside the
 * destination (mkstemp), renamed over it only when complete. The destination
 * must be a regular file or absent (never a device, a directory or a FIFO),
 * and never the file the output was made from. */
#ifndef BN_FILES_H
#define BN_FILES_H

#include <stdint.h>
#include <stdio.h>

#include "status.h"

typedef struct {
  FILE *fp;          /* write here; opened "w+b" */
  char path[4096];   /* the destination */
  char tmp[4200];    /* the temporary file */
} bn_outfile;

/* Checks path (and that it is not the same file as input, if input is not
 * NULL), then creates the temporary file. */
bn_status bn_outfile_open(bn_outfile *o, const char *path, const char *input, bn_error *err);
/* Closes the temporary file and renames it over the destination (mode 0666
 * less the umask, as fopen would create it); on failure removes it. */
bn_status bn_outfile_commit(bn_outfile *o, bn_error *err);
/* Closes and removes the temporary file. */
void bn_outfile_abort(bn_outfile *o);

/* A directory for private state (keys, the kernel cache): created with mode 0700
 * (parents 0755) when absent if create; refused, as ssh refuses a key file, when it
 * is not a directory, belongs to another user, or others may write to it. */
bn_status bn_private_dir(const char *path, int create, bn_error *err);
/* A file's bytes, mapped (or read into memory advised for 2 MiB pages). */
typedef struct {
  const uint8_t *base;
  size_t size;   /* the file's */
  size_t mapped; /* the mapping's, for bn_file_release */
} bn_file_view;
/* Opens a regular file of at least min_size bytes (else "PATH: not WHAT (N bytes is too short)"); with
 * huge_copy its bytes are read into anonymous memory advised for 2 MiB pages (weights then
 * stream through a few hundred TLB entries, not one per 4 KiB page; where the copy cannot be
 * made the file is mapped), else the file is mapped. */
bn_status bn_file_load(const char *path, size_t min_size, int huge_copy, const char *what, bn_file_view *v,
                       bn_error *err);
void bn_file_release(bn_file_view *v);

/* The directory part of path ("." when it has none). */
bn_status bn_dir_of(const char *path, char *dir, size_t cap, bn_error *err);
/* Reads exactly n bytes of a private file: regular, the user's, unreadable by others.
 * Returns 1 if it does not exist, else 0 with *st the outcome. */
int bn_private_read(const char *path, uint8_t *buf, size_t n, bn_error *err, bn_status *st);
/* Creates path (mode 0600; an existing file is an error, errno EEXIST) holding buf[0..n). */
bn_status bn_private_write(const char *path, const uint8_t *buf, size_t n, bn_error *err);
/* n secret random bytes kept in path, made on first use in a private directory. */
bn_status bn_secret_file(const char *path, uint8_t *key, size_t n, bn_error *err);

#endif
