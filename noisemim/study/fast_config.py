"""A Config that formats its text once (mmengine's Runner does it 4 times)."""
from mmengine.config import Config


class FormattedOnceConfig(Config):
    """A :class:`~mmengine.config.Config` whose ``pretty_text`` is cached.

    The Runner logs, dumps and hands its config to the visualizer, each time
    re-running yapf over the whole text, which costs more CPU than a short
    study run's training. The text is formatted once here; the config must
    not change afterwards (the Runner only copies it).
    """

    @classmethod
    def freeze(cls, cfg: Config) -> 'FormattedOnceConfig':
        """A copy of ``cfg`` with its formatted text computed once.

        Args:
            cfg (Config): The final config of a run.

        Returns:
            FormattedOnceConfig: The same settings and file name.
        """
        frozen = cls(cfg_dict=cfg.to_dict(), filename=cfg.filename)
        text = Config.pretty_text.fget(frozen)
        # Config routes attribute writes into its dict of settings.
        object.__setattr__(frozen, '_formatted_text', text)
        return frozen

    @property
    def pretty_text(self) -> str:
        """The text formatted by :meth:`freeze`."""
        return self.__dict__['_formatted_text']
