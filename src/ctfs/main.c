/* ctfs: placeholder until the FUSE daemon lands (issue: ctfs daemon). */
#include "config.h"
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "ctfs: not built in this version yet\n");
    return 4;
}
