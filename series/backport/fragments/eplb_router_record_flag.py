"""Fragment: BaseRouter's checks of the shared record flag, as PR #36261 has
them (patch `fused_map_record_kernel`)."""


def require_record_flag(self) -> None:
    """The launcher reads the flag on the device: a router without it cannot
    run the kernel."""
    if self.eplb_state.should_record_tensor is None:
        raise ValueError(
            "enable_eplb=True requires should_record_tensor != None"
        )


def assert_record_flag(self) -> None:
    assert self.eplb_state.should_record_tensor is not None
