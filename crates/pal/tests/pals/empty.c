/* A loadable shared library that is not a PAL: it exports none of the PAL API symbols. */
int not_a_pal(void);
int not_a_pal(void)
{
	return 0;
}
